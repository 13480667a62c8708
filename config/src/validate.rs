//! Parsing plus the semantic checks serde cannot express.
//!
//! The text is parsed twice: by toml_edit into a spanned document (to turn
//! key paths into line/column and back) and by serde into [`Config`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;

use toml_edit::ImDocument;

use crate::locate::{line_col, path, path_at, span_of, KeyPath};
use crate::policy::{NackPolicy, QueuePolicyRaw};
use crate::schema::{Config, FsyncMode};
use crate::ConfigError;

/// Smallest journal segment: smaller ones would mean a file per few messages.
const MIN_SEGMENT_BYTES: u64 = 1024 * 1024;

pub(crate) fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let error_at = |span: Option<Range<usize>>, key: Option<KeyPath>, message: &str| {
        let (line, column) = match span {
            Some(s) => {
                let (l, c) = line_col(text, s.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ConfigError {
            file: origin.to_path_buf(),
            line,
            column,
            key: key.map(|k| k.to_string()),
            message: tidy(message),
        }
    };

    let doc = ImDocument::parse(text).map_err(|e| error_at(e.span(), None, e.message()))?;
    let config: Config = toml::from_str(text).map_err(|e| {
        let span = e.span();
        let key = span.as_ref().and_then(|s| path_at(&doc, s.start));
        error_at(span, key, e.message())
    })?;

    let mut problems = Problems::default();
    check(&config, &mut problems);
    // Report the earliest problem in the file; ones with no position last.
    let first = problems
        .0
        .into_iter()
        .map(|(key, message)| (span_of(&doc, &key), key, message))
        .min_by_key(|(span, _, _)| span.as_ref().map_or(usize::MAX, |s| s.start));
    match first {
        Some((span, key, message)) => Err(error_at(span, Some(key), &message)),
        None => Ok(config),
    }
}

/// The semantic checks alone, for a [`Config`] built in code: errors have a
/// key but no position.
pub(crate) fn validate(config: &Config, origin: &Path) -> Result<(), ConfigError> {
    let mut problems = Problems::default();
    check(config, &mut problems);
    match problems.0.into_iter().next() {
        Some((key, message)) => Err(ConfigError {
            file: origin.to_path_buf(),
            line: None,
            column: None,
            key: Some(key.to_string()),
            message,
        }),
        None => Ok(()),
    }
}

/// One line per error; hints where toml/serde's wording is terse.
fn tidy(message: &str) -> String {
    let mut m = message
        .trim()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if m == "invalid socket address syntax" {
        m.push_str(": expected IP:PORT, e.g. \"127.0.0.1:61613\" or \"[::1]:61613\"");
    }
    m
}

/// Semantic problems found, each with the key path it is about.
#[derive(Default)]
struct Problems(Vec<(KeyPath, String)>);

impl Problems {
    fn add(&mut self, key: KeyPath, message: impl Into<String>) {
        self.0.push((key, message.into()));
    }
}

fn check(c: &Config, p: &mut Problems) {
    check_server(c, p);
    check_limits(c, p);
    check_heartbeat(c, p);
    check_storage(c, p);
    check_tls(c, p);
    check_auth(c, p);
    check_destinations(c, p);
}

/// `[[tls]]`: the files must be named; whether they exist and parse is
/// checked when the broker starts (a config may be checked on another host).
fn check_tls(c: &Config, p: &mut Problems) {
    for (i, tls) in c.tls.iter().enumerate() {
        let at = path(&["tls"]).index(i);
        if tls.cert.as_os_str().is_empty() {
            p.add(
                at.key("cert"),
                "must name the PEM file of the server's certificate chain",
            );
        }
        if tls.key.as_os_str().is_empty() {
            p.add(
                at.key("key"),
                "must name the PEM file of the server's private key",
            );
        }
        match &tls.client_ca {
            Some(ca) if ca.as_os_str().is_empty() => p.add(
                at.key("client_ca"),
                "must name a PEM file of CA certificates (or be left out)",
            ),
            None if tls.require_client_cert => p.add(
                at.key("require_client_cert"),
                "require_client_cert = true needs `client_ca`, the CAs client certificates are checked against",
            ),
            _ => {}
        }
    }
}

/// Checks the shape of an argon2id PHC string,
/// `$argon2id$v=19$m=M,t=T,p=P$SALT$HASH` (the `v=` part is optional), so that a
/// truncated paste is reported with its line. The broker parses it fully at start.
fn check_phc(hash: &str) -> Result<(), &'static str> {
    let b64 = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    };
    let Some(rest) = hash.strip_prefix("$argon2id$") else {
        return Err("must be an argon2id PHC string starting with \"$argon2id$\" (see `stompd hash-password`)");
    };
    let mut parts: Vec<&str> = rest.split('$').collect();
    if parts.first().is_some_and(|v| v.starts_with("v=")) {
        parts.remove(0);
    }
    let shape = "must be an argon2id PHC string of the form \"$argon2id$v=19$m=M,t=T,p=P$SALT$HASH\" (see `stompd hash-password`)";
    let [params, salt, out] = parts[..] else {
        return Err(shape);
    };
    let params_ok = params.split(',').all(|kv| {
        kv.split_once('=').is_some_and(|(k, v)| {
            !k.is_empty() && !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric())
        })
    });
    if !params_ok || !b64(salt) || !b64(out) {
        return Err(shape);
    }
    Ok(())
}

fn check_server(c: &Config, p: &mut Problems) {
    let s = &c.server;
    if s.listen.is_empty() && c.websocket.listen.is_empty() && c.tls.is_empty() {
        p.add(
            path(&["server", "listen"]),
            "no listener: server.listen and websocket.listen are both empty and there is no [[tls]] listener",
        );
    }
    // The same address twice would fail at bind time with a vaguer error.
    // Port 0 (any free port) may repeat.
    let mut seen: BTreeMap<SocketAddr, KeyPath> = BTreeMap::new();
    for (table, addrs) in [
        ("server", &s.listen),
        ("admin", &c.admin.listen),
        ("websocket", &c.websocket.listen),
    ] {
        for (i, addr) in addrs.iter().enumerate() {
            let key = path(&[table, "listen"]).index(i);
            if addr.port() == 0 {
                continue;
            }
            if let Some(first) = seen.get(addr) {
                p.add(key, format!("address {addr} is already used by `{first}`"));
            } else {
                seen.insert(*addr, key);
            }
        }
    }
    for (i, tls) in c.tls.iter().enumerate() {
        let key = path(&["tls"]).index(i).key("listen");
        if tls.listen.port() == 0 {
            continue;
        }
        if let Some(first) = seen.get(&tls.listen) {
            p.add(
                key,
                format!("address {} is already used by `{first}`", tls.listen),
            );
        } else {
            seen.insert(tls.listen, key);
        }
    }
    if s.connect_timeout_ms == 0 {
        p.add(
            path(&["server", "connect_timeout_ms"]),
            "must be at least 1 (milliseconds)",
        );
    }
    if s.name.is_empty() || s.name.chars().any(char::is_control) {
        p.add(
            path(&["server", "name"]),
            "must be non-empty and contain no control characters (it is sent in the `server` header)",
        );
    }
    if c.log.level.trim().is_empty() {
        p.add(
            path(&["log", "level"]),
            "must not be empty (e.g. \"info\" or \"stompd=debug,info\")",
        );
    }
}

fn check_limits(c: &Config, p: &mut Problems) {
    let l = &c.limits;
    let at_least_one = [
        ("max_frame_bytes", l.max_frame_bytes as u64),
        ("max_header_line_bytes", l.max_header_line_bytes as u64),
        ("max_headers", l.max_headers as u64),
        ("max_body_bytes", l.max_body_bytes as u64),
        ("max_subscriptions", l.max_subscriptions as u64),
        ("max_transaction_frames", l.max_transaction_frames as u64),
        ("max_unacked", u64::from(l.max_unacked)),
        ("outbox_bytes", l.outbox_bytes as u64),
        ("write_timeout_ms", l.write_timeout_ms),
    ];
    for (key, value) in at_least_one {
        if value == 0 {
            p.add(path(&["limits", key]), "must be at least 1");
        }
    }
    if l.max_header_line_bytes > l.max_frame_bytes {
        p.add(
            path(&["limits", "max_header_line_bytes"]),
            format!(
                "{} is larger than limits.max_frame_bytes ({})",
                l.max_header_line_bytes, l.max_frame_bytes
            ),
        );
    }
    if l.max_body_bytes > l.max_frame_bytes {
        p.add(
            path(&["limits", "max_body_bytes"]),
            format!(
                "{} is larger than limits.max_frame_bytes ({}); the body is part of the frame",
                l.max_body_bytes, l.max_frame_bytes
            ),
        );
    }
}

fn check_heartbeat(c: &Config, p: &mut Problems) {
    let h = &c.heartbeat;
    // Written so that NaN fails too.
    if !(h.grace >= 1.0 && h.grace.is_finite()) {
        p.add(
            path(&["heartbeat", "grace"]),
            format!("must be a finite number >= 1.0, got {}", h.grace),
        );
    }
    if h.min_ms > h.max_ms {
        p.add(
            path(&["heartbeat", "min_ms"]),
            format!(
                "{} is larger than heartbeat.max_ms ({})",
                h.min_ms, h.max_ms
            ),
        );
    }
}

fn check_storage(c: &Config, p: &mut Problems) {
    let s = &c.storage;
    if s.dir.as_os_str().is_empty() {
        p.add(path(&["storage", "dir"]), "must not be empty");
    }
    if s.fsync == FsyncMode::Interval && s.fsync_interval_ms == 0 {
        p.add(
            path(&["storage", "fsync_interval_ms"]),
            "must be at least 1 (milliseconds) with fsync = \"interval\"",
        );
    }
    if s.segment_bytes < MIN_SEGMENT_BYTES {
        p.add(
            path(&["storage", "segment_bytes"]),
            format!(
                "{} is below the minimum of {MIN_SEGMENT_BYTES} (1 MiB)",
                s.segment_bytes
            ),
        );
    }
}

fn check_auth(c: &Config, p: &mut Problems) {
    let a = &c.auth;
    if !a.anonymous && a.users.is_empty() {
        p.add(
            path(&["auth", "anonymous"]),
            "anonymous = false and no [[auth.users]]: nobody could connect",
        );
    }
    let mut names: BTreeMap<&str, KeyPath> = BTreeMap::new();
    for (i, user) in a.users.iter().enumerate() {
        let at = path(&["auth", "users"]).index(i);
        let name = user.name.as_str();
        if name.is_empty() {
            p.add(at.key("name"), "user name must not be empty");
        } else if name == "*"
            || name == "anonymous"
            || name.starts_with("group:")
            || name.chars().any(char::is_control)
        {
            p.add(
                at.key("name"),
                format!("invalid user name {name:?}: \"*\", \"anonymous\", a \"group:\" prefix and control characters are reserved"),
            );
        } else if let Some(first) = names.get(name) {
            p.add(
                at.key("name"),
                format!("duplicate user name {name:?} (first defined at `{first}`)"),
            );
        } else {
            names.insert(name, at.key("name"));
        }
        if let Err(why) = check_phc(&user.password_hash) {
            p.add(at.key("password_hash"), why);
        }
        for (j, group) in user.groups.iter().enumerate() {
            if group.is_empty() || group.chars().any(char::is_control) {
                p.add(
                    at.key("groups").index(j),
                    "group name must be non-empty, without control characters",
                );
            }
        }
    }
    for (i, rule) in a.rules.iter().enumerate() {
        let at = path(&["auth", "rules"]).index(i);
        if rule.destinations.is_empty() {
            p.add(
                at.key("destinations"),
                "a rule needs at least one destination pattern",
            );
        }
        for (j, pattern) in rule.destinations.iter().enumerate() {
            if let Err(why) = check_pattern(pattern) {
                p.add(at.key("destinations").index(j), why);
            }
        }
        if rule.users.is_empty() && rule.groups.is_empty() {
            p.add(
                at.key("users"),
                "a rule needs `users` or `groups` (use users = [\"*\"] for everyone)",
            );
        }
        for (j, user) in rule.users.iter().enumerate() {
            if user.is_empty() || user.chars().any(char::is_control) {
                p.add(at.key("users").index(j), "user name must be non-empty");
            }
        }
        if rule.allow.is_empty() {
            p.add(
                at.key("allow"),
                "a rule must allow something: \"read\", \"write\", \"create\", \"admin\"",
            );
        }
    }
}

/// A destination glob: absolute, non-empty, no control characters.
fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("destination pattern must not be empty".to_owned());
    }
    if !pattern.starts_with('/') {
        return Err(format!(
            "invalid destination pattern {pattern:?}: must start with '/' (e.g. \"/queue/*\")"
        ));
    }
    if pattern.chars().any(char::is_control) {
        return Err(format!(
            "invalid destination pattern {pattern:?}: control characters"
        ));
    }
    Ok(())
}

/// A queue or topic name: the part after `/queue/` or `/topic/`.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("destination name must not be empty".to_owned());
    }
    if name.contains('/') {
        return Err(format!(
            "invalid name {name:?}: must not contain '/' (write the name without the /queue/ or /topic/ prefix)"
        ));
    }
    if name.chars().any(|ch| ch.is_ascii_control()) {
        return Err(format!("invalid name {name:?}: control characters"));
    }
    Ok(())
}

fn check_principals(list: Option<&Vec<String>>, at: &KeyPath, p: &mut Problems) {
    for (i, who) in list.into_iter().flatten().enumerate() {
        let bad = who.is_empty() || who == "group:" || who.chars().any(char::is_control);
        if bad {
            p.add(
                at.index(i),
                format!("invalid principal {who:?}: use \"*\", a user name or \"group:NAME\""),
            );
        }
    }
}

/// Whether a queue named `name` exists or may be created: configured, or
/// matched by a /queue/ auto_create rule.
fn queue_can_exist(c: &Config, name: &str) -> bool {
    c.queues.contains_key(name) || c.auto_create_rule(&format!("/queue/{name}")).is_some()
}

/// Checks the fields one policy layer sets, at that layer's keys.
/// `own_name` is the queue's name for `[queues.NAME]`.
fn check_layer(
    c: &Config,
    raw: &QueuePolicyRaw,
    at: &KeyPath,
    own_name: Option<&str>,
    p: &mut Problems,
) {
    if raw.prefetch == Some(0) {
        p.add(at.key("prefetch"), "must be at least 1");
    }
    if let Some(priority) = raw.default_priority {
        if priority > 9 {
            p.add(
                at.key("default_priority"),
                format!("{priority} is out of range: priorities are 0..=9"),
            );
        }
    }
    if let Some(backoff) = raw.redelivery_backoff {
        if !(backoff >= 1.0 && backoff.is_finite()) {
            p.add(
                at.key("redelivery_backoff"),
                format!("must be a finite number >= 1.0, got {backoff}"),
            );
        }
    }
    if let Some(dl) = &raw.dead_letter {
        let key = at.key("dead_letter");
        if let Err(why) = check_name(dl) {
            p.add(key, format!("dead-letter queue: {why}"));
        } else if own_name == Some(dl.as_str()) {
            p.add(
                key,
                format!("queue {dl:?} cannot be its own dead-letter queue"),
            );
        } else if !queue_can_exist(c, dl) {
            p.add(
                key,
                format!("dead-letter queue {dl:?} is not defined: add [queues.{dl}] or an [[auto_create]] rule matching \"/queue/{dl}\""),
            );
        }
    }
    check_principals(raw.read.as_ref(), &at.key("read"), p);
    check_principals(raw.write.as_ref(), &at.key("write"), p);
}

fn check_destinations(c: &Config, p: &mut Problems) {
    check_layer(c, &c.queue_defaults, &path(&["queue_defaults"]), None, p);
    for (name, raw) in &c.queues {
        let at = path(&["queues", name]);
        if let Err(why) = check_name(name) {
            p.add(at.clone(), why);
        }
        check_layer(c, raw, &at, Some(name), p);
        check_nack(c, name, p);
        check_dead_letter_cycle(c, name, p);
    }
    for (name, topic) in &c.topics {
        let at = path(&["topics", name]);
        if let Err(why) = check_name(name) {
            p.add(at.clone(), why);
        }
        check_principals(topic.read.as_ref(), &at.key("read"), p);
        check_principals(topic.write.as_ref(), &at.key("write"), p);
    }
    for (i, rule) in c.auto_create.iter().enumerate() {
        let at = path(&["auto_create"]).index(i);
        if let Err(why) = check_pattern(&rule.pattern) {
            p.add(at.key("pattern"), why);
        } else if !(rule.pattern.starts_with("/queue/") || rule.pattern.starts_with("/topic/")) {
            p.add(
                at.key("pattern"),
                format!(
                    "pattern {:?} must start with \"/queue/\" or \"/topic/\"",
                    rule.pattern
                ),
            );
        }
        check_principals(Some(&rule.who), &at.key("who"), p);
        check_layer(c, &rule.policy, &at, None, p);
        if rule.pattern.starts_with("/queue/") {
            let policy = c.auto_queue_policy(rule);
            if policy.nack == NackPolicy::DeadLetter && policy.dead_letter.is_none() {
                let key = if rule.policy.nack.is_some() {
                    at.key("nack")
                } else {
                    path(&["queue_defaults", "nack"])
                };
                p.add(
                    key,
                    format!(
                        "nack = \"dead-letter\" but queues created by {:?} have no dead_letter",
                        rule.pattern
                    ),
                );
            }
        }
    }
}

/// The key of `field` in the most specific layer that sets it for
/// configured queue `name` (see [`Config::queue_policy`]).
fn source_key(c: &Config, name: &str, field: &str, set: fn(&QueuePolicyRaw) -> bool) -> KeyPath {
    if c.queues.get(name).is_some_and(set) {
        return path(&["queues", name, field]);
    }
    let destination = format!("/queue/{name}");
    if let Some(i) = c.auto_create.iter().position(|r| r.matches(&destination)) {
        if set(&c.auto_create[i].policy) {
            return path(&["auto_create"]).index(i).key(field);
        }
    }
    path(&["queue_defaults", field])
}

/// `nack = "dead-letter"` needs a dead-letter queue; reported where `nack`
/// was set for configured queue `name`.
fn check_nack(c: &Config, name: &str, p: &mut Problems) {
    let Some(policy) = c.queue_policy(name) else {
        return;
    };
    if policy.nack == NackPolicy::DeadLetter && policy.dead_letter.is_none() {
        p.add(
            source_key(c, name, "nack", |l| l.nack.is_some()),
            format!("nack = \"dead-letter\" but queue {name:?} has no dead_letter"),
        );
    }
}

/// Dead-letter chains must not lead back to where they started, or a
/// poison message would circulate for ever.
fn check_dead_letter_cycle(c: &Config, name: &str, p: &mut Problems) {
    let mut chain = vec![name.to_owned()];
    let mut current = name.to_owned();
    while let Some(next) = c.resolve_queue(&current).and_then(|q| q.dead_letter) {
        if next == name {
            chain.push(next);
            p.add(
                source_key(c, name, "dead_letter", |l| l.dead_letter.is_some()),
                format!("dead-letter queues form a loop: {}", chain.join(" -> ")),
            );
            return;
        }
        if chain.contains(&next) {
            // A loop not through `name`: reported when checking its members.
            return;
        }
        chain.push(next.clone());
        current = next;
    }
}
