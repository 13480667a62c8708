//! The embedded default: parses, matches the built-in defaults, and
//! mentions every key of the schema.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use stompd_config::{
    AuthRule, AutoCreateRule, Config, LimitsConfig, Permission, QueuePolicy, QueuePolicyRaw,
    TlsListenerConfig, TopicConfig, UserConfig, DEFAULT_CONFIG,
};

#[test]
fn embedded_default_parses_with_documented_values() {
    let c = Config::embedded();
    let loopback: SocketAddr = "127.0.0.1:61613".parse().unwrap();
    assert_eq!(c.server.listen, vec![loopback]);
    assert!(c.auth.anonymous);
    assert!(c.auth.users.is_empty());
    assert!(
        c.auth.rules.is_empty(),
        "embedded default is an open broker"
    );
    assert!(c.queues.is_empty() && c.topics.is_empty());
    let patterns: Vec<&str> = c.auto_create.iter().map(|r| r.pattern.as_str()).collect();
    assert_eq!(patterns, ["/queue/*", "/topic/*"]);
    assert_eq!(c.auto_create[0].policy.persistent, Some(true));
    assert_eq!(c.auto_create[0].who, ["*"]);
    let auto = c.resolve_queue("anything").expect("auto-created");
    assert!(auto.persistent);
    assert_eq!(c.resolve_queue("a/b"), None, "'*' does not cross '/'");
}

/// The text's values equal the `Default` impls, so `Config::default()` and
/// an empty file behave like the documented default (apart from the
/// auto_create rules, which only the file has).
#[test]
fn embedded_default_matches_builtin_defaults() {
    let c = Config::embedded();
    let d = Config::default();
    assert_eq!(c.server, d.server);
    assert_eq!(c.log, d.log);
    assert_eq!(c.limits, d.limits);
    assert_eq!(c.heartbeat, d.heartbeat);
    assert_eq!(c.storage, d.storage);
    assert_eq!(c.admin, d.admin);
    assert_eq!(c.websocket, d.websocket);
    assert_eq!(c.auth, d.auth);
    let mut from_file = QueuePolicy::default();
    from_file.apply(&c.queue_defaults);
    assert_eq!(from_file, QueuePolicy::default());
    // Every scalar of [queue_defaults] is written out, not left to the code.
    let raw = &c.queue_defaults;
    assert!(raw.persistent.is_some() && raw.redelivery_backoff.is_some() && raw.closed.is_some());
    assert_eq!(LimitsConfig::default().max_frame_bytes, 16 * 1024 * 1024);
}

#[test]
fn empty_file_is_valid_and_equals_default() {
    let c = Config::from_toml("", std::path::Path::new("empty.toml")).unwrap();
    assert_eq!(c, Config::default());
}

/// A config with every optional part filled in, so serializing it names
/// every field of every struct.
fn everything() -> Config {
    let mut c = Config::embedded();
    c.auth.users.push(UserConfig {
        name: "alice".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        groups: vec!["producers".into()],
    });
    c.tls.push(TlsListenerConfig {
        listen: "127.0.0.1:61614".parse().unwrap(),
        cert: "server.crt".into(),
        key: "server.key".into(),
        client_ca: Some("clients.pem".into()),
        require_client_cert: true,
    });
    c.auth.rules.push(AuthRule {
        destinations: vec!["/queue/*".into()],
        users: vec!["alice".into()],
        groups: vec!["producers".into()],
        allow: vec![Permission::Read],
    });
    let mut all = c.queue_defaults.clone();
    all.dead_letter = Some("dlq".into());
    all.read = Some(vec!["*".into()]);
    all.write = Some(vec!["*".into()]);
    c.queues.insert("orders".into(), all.clone());
    c.topics.insert(
        "news".into(),
        TopicConfig {
            persistent: true,
            read: Some(vec!["*".into()]),
            write: Some(vec!["*".into()]),
        },
    );
    c.auto_create.push(AutoCreateRule {
        pattern: "/queue/x.*".into(),
        who: vec!["*".into()],
        policy: all,
    });
    c
}

fn table_keys(value: &toml::Value) -> BTreeSet<String> {
    value
        .as_table()
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn every_field_appears_in_the_default_text() {
    let full = toml::Value::try_from(everything()).unwrap();
    let text: toml::Value = toml::from_str(DEFAULT_CONFIG).unwrap();
    let tables = [
        "server",
        "log",
        "limits",
        "heartbeat",
        "storage",
        "admin",
        "websocket",
        "auth",
        "queue_defaults",
    ];
    assert_eq!(
        table_keys(&full),
        BTreeSet::from_iter(
            tables
                .iter()
                .chain(&["queues", "topics", "auto_create", "tls"])
                .map(|s| s.to_string())
        ),
        "a top-level table is missing from this test"
    );
    // Keys that are optional tables/arrays of tables or unset-by-default,
    // documented as commented-out examples.
    let commented = ["users", "rules", "dead_letter", "read", "write"];
    for table in tables {
        let want = table_keys(&full[table]);
        let have = table_keys(&text[table]);
        for key in &want {
            if commented.contains(&key.as_str()) {
                assert!(
                    DEFAULT_CONFIG.contains(&format!("# {key} = "))
                        || DEFAULT_CONFIG.contains(&format!("[[{table}.{key}]]")),
                    "{table}.{key} is not documented in default.toml"
                );
            } else {
                assert!(
                    have.contains(key),
                    "{table}.{key} missing from default.toml"
                );
            }
        }
        assert!(
            have.is_subset(&want),
            "default.toml [{table}] has keys the schema lacks"
        );
    }
    // Fields of the array/map entries, shown in commented-out examples.
    for (section, entry) in [
        ("auth", &full["auth"]["users"][0]),
        ("auth", &full["auth"]["rules"][0]),
        ("topics", &full["topics"]["news"]),
        ("auto_create", &full["auto_create"][2]),
        ("tls", &full["tls"][0]),
    ] {
        for key in table_keys(entry) {
            let documented = DEFAULT_CONFIG
                .lines()
                .map(|l| l.trim_start_matches('#').trim_start())
                .any(|l| l.starts_with(&format!("{key} =")));
            assert!(
                documented,
                "{section}: `{key}` is not documented in default.toml"
            );
        }
    }
}

#[test]
fn every_scalar_key_has_a_comment_above_it() {
    let mut previous = "";
    for line in DEFAULT_CONFIG.lines() {
        let uncommented_key = !line.starts_with('#')
            && !line.starts_with('[')
            && line.contains(" = ")
            && !line.starts_with("pattern")
            && !line.starts_with("who")
            && !line.starts_with("persistent = true");
        if uncommented_key {
            assert!(
                previous.starts_with('#'),
                "no comment above `{line}` in default.toml"
            );
        }
        previous = line;
    }
}

#[test]
fn serialized_config_parses_back_to_itself() {
    let c = everything();
    let text = toml::to_string(&c).unwrap();
    let mut with_dlq = c.clone();
    with_dlq
        .queues
        .insert("dlq".into(), QueuePolicyRaw::default());
    let text_dlq = toml::to_string(&with_dlq).unwrap();
    let back = Config::from_toml(&text_dlq, std::path::Path::new("x.toml")).unwrap();
    assert_eq!(back, with_dlq);
    // Without the dlq queue, "dlq" is still matched by "/queue/*".
    assert!(Config::from_toml(&text, std::path::Path::new("x.toml")).is_ok());
}
