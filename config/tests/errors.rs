//! Every error names the file, line, column and key.

use std::path::{Path, PathBuf};

use stompd_config::{Config, ConfigError};

const FILE: &str = "/etc/stompd.toml";
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new(FILE))
}

/// Asserts `text` fails at `key`, `line`:`column` with a message containing `needle`.
#[track_caller]
fn assert_error(text: &str, key: &str, line: usize, column: usize, needle: &str) -> ConfigError {
    let e = match parse(text) {
        Ok(_) => panic!("expected an error at `{key}` for:\n{text}"),
        Err(e) => e,
    };
    assert_eq!(e.file, PathBuf::from(FILE), "{e}");
    assert_eq!(e.key.as_deref(), Some(key), "{e}");
    assert_eq!((e.line, e.column), (Some(line), Some(column)), "{e}");
    assert!(e.message.contains(needle), "{e:?} lacks {needle:?}");
    e
}

#[test]
fn display_has_file_line_column_key_message() {
    let text = "[queues.orders]\npersistent = true\ndead_letter = \"dlq\"\n";
    let e = assert_error(
        text,
        "queues.orders.dead_letter",
        3,
        1,
        "\"dlq\" is not defined",
    );
    assert!(
        e.to_string().starts_with(
            "/etc/stompd.toml:3:1: key `queues.orders.dead_letter`: dead-letter queue \"dlq\" is not defined"
        ),
        "{e}"
    );
}

#[test]
fn display_omits_missing_parts() {
    let e = ConfigError {
        file: PathBuf::from("a.toml"),
        line: None,
        column: None,
        key: None,
        message: "boom".into(),
    };
    assert_eq!(e.to_string(), "a.toml: boom");
    let e = ConfigError {
        line: Some(2),
        column: Some(5),
        ..e
    };
    assert_eq!(e.to_string(), "a.toml:2:5: boom");
}

// ---- syntax and deserialization errors ----

#[test]
fn syntax_error_has_position() {
    let e = parse("[server]\nlisten = [\"127.0.0.1:1\"\n\n[log]\n").unwrap_err();
    // Arrays may span lines: the parser gives up at the next table header.
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.column.is_some());
    assert!(!e.message.contains('\n'), "one line: {e}");
}

#[test]
fn unknown_top_level_table() {
    assert_error(
        "\n[servr]\nlisten = []\n",
        "servr",
        2,
        2,
        "unknown field `servr`",
    );
}

#[test]
fn unknown_field_in_nested_table() {
    let text = "[server]\nname = \"x\"\n\n[queues.orders]\npersistent = true\n  prefech = 5\n";
    assert_error(
        text,
        "queues.orders.prefech",
        6,
        3,
        "unknown field `prefech`",
    );
}

#[test]
fn unknown_field_in_second_array_table_entry() {
    let text = format!(
        "[[auth.users]]\nname = \"a\"\npassword_hash = \"{HASH}\"\n\n[[auth.users]]\nname = \"b\"\npasword_hash = \"x\"\n"
    );
    assert_error(&text, "auth.users[1].pasword_hash", 7, 1, "unknown field");
}

#[test]
fn unknown_field_in_inline_table_and_dotted_key() {
    assert_error(
        "[queues]\norders = { persistent = true, depth = 3 }\n",
        "queues.orders.depth",
        2,
        31,
        "unknown field `depth`",
    );
    assert_error(
        "queues.orders.persistnt = true\n",
        "queues.orders.persistnt",
        1,
        15,
        "unknown field",
    );
}

#[test]
fn unknown_field_in_auto_create_rule() {
    let text = "[[auto_create]]\npattern = \"/queue/*\"\npersistant = true\n";
    assert_error(text, "auto_create[0].persistant", 3, 1, "unknown field");
}

#[test]
fn wrong_type_points_at_value() {
    assert_error(
        "[limits]\nmax_headers = \"many\"\n",
        "limits.max_headers",
        2,
        15,
        "invalid type",
    );
    assert_error("heartbeat = 5\n", "heartbeat", 1, 13, "invalid type");
    assert_error(
        "[queues.q]\nprefetch = -1\n",
        "queues.q.prefetch",
        2,
        12,
        "u32",
    );
}

#[test]
fn bad_enum_values() {
    assert_error(
        "[queues.orders]\noverflow = \"drop_oldest\"\n",
        "queues.orders.overflow",
        2,
        12,
        "drop-oldest",
    );
    assert_error(
        "[storage]\nfsync = \"sometimes\"\n",
        "storage.fsync",
        2,
        9,
        "unknown variant",
    );
    assert_error(
        "[log]\nformat = \"xml\"\n",
        "log.format",
        2,
        10,
        "unknown variant",
    );
    assert!(parse("[queues.q]\nnack = \"dead-letter\"\ndead_letter = \"d\"\n[queues.d]\n").is_ok());
}

#[test]
fn bad_listen_address() {
    let e = assert_error(
        "[server]\nlisten = [\"127.0.0.1:61613\", \"localhost\"]\n",
        "server.listen[1]",
        2,
        30,
        "invalid socket address",
    );
    assert!(e.message.contains("127.0.0.1:61613"), "has a hint: {e}");
    assert_error(
        "[admin]\nlisten = [\"1.2.3.4:99999\"]\n",
        "admin.listen[0]",
        2,
        11,
        "invalid socket address",
    );
}

#[test]
fn unknown_allow_permission() {
    let text = "[[auth.rules]]\ndestinations = [\"/queue/a\"]\nusers = [\"*\"]\nallow = [\"read\", \"delete\"]\n";
    assert_error(
        text,
        "auth.rules[0].allow[1]",
        4,
        18,
        "unknown variant `delete`",
    );
}

// ---- semantic validation ----

#[test]
fn no_listener() {
    assert_error(
        "[server]\nlisten = []\n",
        "server.listen",
        2,
        1,
        "no listener",
    );
    // A WebSocket listener alone is enough.
    assert!(parse("[server]\nlisten = []\n[websocket]\nlisten = [\"127.0.0.1:0\"]\n").is_ok());
}

#[test]
fn duplicate_listen_address() {
    let text = "[server]\nlisten = [\"127.0.0.1:7000\"]\n[admin]\nlisten = [\"127.0.0.1:7000\"]\n";
    assert_error(
        text,
        "admin.listen[0]",
        4,
        11,
        "already used by `server.listen[0]`",
    );
    // Port 0 may repeat: each bind picks its own free port.
    assert!(
        parse("[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = [\"127.0.0.1:0\"]\n")
            .is_ok()
    );
}

#[test]
fn server_scalars() {
    assert_error(
        "[server]\nconnect_timeout_ms = 0\n",
        "server.connect_timeout_ms",
        2,
        1,
        "at least 1",
    );
    assert_error("[server]\nname = \"\"\n", "server.name", 2, 1, "non-empty");
    assert_error("[log]\nlevel = \" \"\n", "log.level", 2, 1, "empty");
}

#[test]
fn limits() {
    assert_error(
        "[limits]\n\nmax_unacked = 0\n",
        "limits.max_unacked",
        3,
        1,
        "at least 1",
    );
    assert_error(
        "[limits]\nmax_frame_bytes = 1000\nmax_body_bytes = 2000\nmax_header_line_bytes = 100\n",
        "limits.max_body_bytes",
        3,
        1,
        "larger than limits.max_frame_bytes",
    );
}

#[test]
fn heartbeat_grace_below_one() {
    assert_error(
        "[heartbeat]\nsend_ms = 0\ngrace = 0.9\n",
        "heartbeat.grace",
        3,
        1,
        ">= 1.0",
    );
    assert_error(
        "[heartbeat]\ngrace = nan\n",
        "heartbeat.grace",
        2,
        1,
        ">= 1.0",
    );
    assert!(parse("[heartbeat]\ngrace = 1.0\n").is_ok());
}

#[test]
fn heartbeat_min_above_max() {
    assert_error(
        "[heartbeat]\nmax_ms = 10\nmin_ms = 20\n",
        "heartbeat.min_ms",
        3,
        1,
        "larger than heartbeat.max_ms",
    );
}

#[test]
fn fsync_interval_zero() {
    let text = "[storage]\nfsync = \"interval\"\nfsync_interval_ms = 0\n";
    assert_error(
        text,
        "storage.fsync_interval_ms",
        3,
        1,
        "fsync = \"interval\"",
    );
    // Unused with "always": allowed.
    assert!(parse("[storage]\nfsync = \"always\"\nfsync_interval_ms = 0\n").is_ok());
}

#[test]
fn segment_bytes_and_dir() {
    let text = "[storage]\nsegment_bytes = 1048575\n";
    assert_error(text, "storage.segment_bytes", 2, 1, "1 MiB");
    assert!(parse("[storage]\nsegment_bytes = 1048576\n").is_ok());
    assert_error("[storage]\ndir = \"\"\n", "storage.dir", 2, 1, "empty");
}

#[test]
fn key_left_at_default_points_at_its_table() {
    // max_header_line_bytes keeps its default (16384) and is now too big; it
    // is not in the file, so the error points at the table that is.
    let e = assert_error(
        "[server]\n\n[limits]\nmax_frame_bytes = 100\nmax_body_bytes = 100\n",
        "limits.max_header_line_bytes",
        3,
        2,
        "larger than limits.max_frame_bytes",
    );
    assert!(e.message.starts_with("16384 "), "{e}");
}

#[test]
fn password_hash_must_be_argon2id() {
    let text = "[[auth.users]]\nname = \"alice\"\npassword_hash = \"$2b$12$bcrypt\"\n";
    assert_error(text, "auth.users[0].password_hash", 3, 1, "$argon2id$");
}

#[test]
fn duplicate_user_names() {
    let text = format!(
        "[[auth.users]]\nname = \"alice\"\npassword_hash = \"{HASH}\"\n[[auth.users]]\nname = \"bob\"\npassword_hash = \"{HASH}\"\n[[auth.users]]\nname = \"alice\"\npassword_hash = \"{HASH}\"\n"
    );
    assert_error(
        &text,
        "auth.users[2].name",
        8,
        1,
        "duplicate user name \"alice\"",
    );
}

#[test]
fn reserved_user_names() {
    let text = format!("[[auth.users]]\nname = \"group:x\"\npassword_hash = \"{HASH}\"\n");
    assert_error(&text, "auth.users[0].name", 2, 1, "reserved");
}

#[test]
fn nobody_could_connect() {
    assert_error(
        "[auth]\nanonymous = false\n",
        "auth.anonymous",
        2,
        1,
        "nobody",
    );
}

#[test]
fn rule_patterns() {
    let rule = |dests: &str| {
        format!("[[auth.rules]]\ndestinations = {dests}\nusers = [\"*\"]\nallow = [\"read\"]\n")
    };
    assert_error(
        &rule("[\"/queue/a\", \"\"]"),
        "auth.rules[0].destinations[1]",
        2,
        29,
        "must not be empty",
    );
    assert_error(
        &rule("[\"queue/a\"]"),
        "auth.rules[0].destinations[0]",
        2,
        17,
        "must start with '/'",
    );
    assert_error(
        &rule("[]"),
        "auth.rules[0].destinations",
        2,
        1,
        "at least one destination",
    );
}

#[test]
fn rule_needs_principals_and_permissions() {
    assert_error(
        "[[auth.rules]]\ndestinations = [\"/**\"]\nallow = [\"read\"]\n",
        "auth.rules[0].users",
        1,
        1,
        "needs `users` or `groups`",
    );
    assert_error(
        "[[auth.rules]]\ndestinations = [\"/**\"]\ngroups = [\"g\"]\nallow = []\n",
        "auth.rules[0].allow",
        4,
        1,
        "must allow something",
    );
}

#[test]
fn queue_name_with_slash() {
    assert_error(
        "[queues.\"a/b\"]\n",
        "queues.\"a/b\"",
        1,
        9,
        "must not contain '/'",
    );
    assert_error("[topics.\"\"]\n", "topics.\"\"", 1, 9, "must not be empty");
}

#[test]
fn prefetch_zero() {
    assert_error(
        "[queues.orders]\nprefetch = 0\n",
        "queues.orders.prefetch",
        2,
        1,
        "at least 1",
    );
    assert_error(
        "[queue_defaults]\nprefetch = 0\n",
        "queue_defaults.prefetch",
        2,
        1,
        "at least 1",
    );
}

#[test]
fn default_priority_above_nine() {
    assert_error(
        "[queues.q]\ndefault_priority = 10\n",
        "queues.q.default_priority",
        2,
        1,
        "0..=9",
    );
    assert!(parse("[queues.q]\ndefault_priority = 9\n").is_ok());
}

#[test]
fn redelivery_backoff_below_one() {
    let text = "[[auto_create]]\npattern = \"/queue/*\"\n\n[[auto_create]]\npattern = \"/queue/x.**\"\nredelivery_backoff = 0.5\n";
    assert_error(text, "auto_create[1].redelivery_backoff", 6, 1, ">= 1.0");
}

#[test]
fn dead_letter_must_exist() {
    // Matched only by a /topic/ rule: not a queue.
    let text = "[[auto_create]]\npattern = \"/topic/*\"\n[queues.orders]\ndead_letter = \"dlq\"\n";
    assert_error(text, "queues.orders.dead_letter", 4, 1, "is not defined");
    // In queue_defaults too.
    assert_error(
        "[queue_defaults]\ndead_letter = \"nope\"\n",
        "queue_defaults.dead_letter",
        2,
        1,
        "is not defined",
    );
    // Configured, or matched by a /queue/ auto_create rule: fine.
    assert!(parse("[queues.orders]\ndead_letter = \"dlq\"\n[queues.dlq]\n").is_ok());
    assert!(parse(
        "[[auto_create]]\npattern = \"/queue/*.dlq\"\n[queues.orders]\ndead_letter = \"orders.dlq\"\n"
    )
    .is_ok());
    // A prefixed name is a mistake, reported as such.
    assert_error(
        "[queues.dlq]\n[queues.orders]\ndead_letter = \"/queue/dlq\"\n",
        "queues.orders.dead_letter",
        3,
        1,
        "must not contain '/'",
    );
}

#[test]
fn dead_letter_to_itself() {
    assert_error(
        "[queues.orders]\ndead_letter = \"orders\"\n",
        "queues.orders.dead_letter",
        2,
        1,
        "its own dead-letter queue",
    );
}

#[test]
fn nack_dead_letter_needs_a_dead_letter_queue() {
    assert_error(
        "[queues.orders]\nnack = \"dead-letter\"\n",
        "queues.orders.nack",
        2,
        1,
        "no dead_letter",
    );
    assert_error(
        "[queue_defaults]\nnack = \"dead-letter\"\n[[auto_create]]\npattern = \"/queue/*\"\n",
        "queue_defaults.nack",
        2,
        1,
        "no dead_letter",
    );
}

#[test]
fn auto_create_pattern() {
    assert_error(
        "[[auto_create]]\npattern = \"/temp/*\"\n",
        "auto_create[0].pattern",
        2,
        1,
        "must start with \"/queue/\" or \"/topic/\"",
    );
    assert_error(
        "[[auto_create]]\npattern = \"\"\n",
        "auto_create[0].pattern",
        2,
        1,
        "must not be empty",
    );
    assert_error(
        "[[auto_create]]\npattern = \"/queue/*\"\nwho = [\"group:\"]\n",
        "auto_create[0].who[0]",
        3,
        8,
        "invalid principal",
    );
}

#[test]
fn invalid_principal_in_queue_acl() {
    assert_error(
        "[topics.news]\nwrite = [\"*\", \"\"]\n",
        "topics.news.write[1]",
        2,
        15,
        "invalid principal",
    );
}

#[test]
fn earliest_problem_is_reported() {
    let text = "[queues.b]\nprefetch = 0\n[queues.a]\nprefetch = 0\n[heartbeat]\ngrace = 0.1\n";
    assert_error(text, "queues.b.prefetch", 2, 1, "at least 1");
}

#[test]
fn column_counts_characters_not_bytes() {
    assert_error(
        "[queues]\n\"größe\" = { prefetch = 0 }\n",
        "queues.\"größe\".prefetch",
        2,
        13,
        "at least 1",
    );
}

// ---- loading ----

#[test]
fn load_missing_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.toml");
    let e = Config::load(&path).unwrap_err();
    assert_eq!(e.file, path);
    assert_eq!((e.line, e.key.as_deref()), (None, None));
    let shown = e.to_string();
    assert!(shown.starts_with(&path.display().to_string()), "{shown}");
    let os = std::io::Error::from(std::io::ErrorKind::NotFound).to_string();
    assert!(
        shown.contains("No such file") || shown.contains(&os),
        "names the OS error: {shown}"
    );
}

#[test]
fn load_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = Config::load(dir.path()).unwrap_err();
    assert_eq!(e.file, dir.path());
    assert!(e.message.starts_with("cannot read"), "{e}");
}

#[test]
fn load_reads_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stompd.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = [\"127.0.0.1:0\"]\nname = \"t\"\n",
    )
    .unwrap();
    assert_eq!(Config::load(&path).unwrap().server.name, "t");
    std::fs::write(&path, "[server]\n\nname = 5\n").unwrap();
    let e = Config::load(&path).unwrap_err();
    assert_eq!(e.file, path);
    assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("server.name")));
}

#[test]
fn dead_letter_loop() {
    let text = "[queues.a]\ndead_letter = \"b\"\n[queues.b]\ndead_letter = \"c\"\n[queues.c]\ndead_letter = \"a\"\n";
    assert_error(text, "queues.a.dead_letter", 2, 1, "loop: a -> b -> c -> a");
    // A chain that ends is fine.
    assert!(parse(
        "[queues.a]\ndead_letter = \"b\"\n[queues.b]\ndead_letter = \"c\"\n[queues.c]\n"
    )
    .is_ok());
}

#[test]
fn dead_letter_loop_through_auto_created_queue() {
    // "b" is auto-created and inherits dead_letter = "a" from its rule.
    let text = "[[auto_create]]\npattern = \"/queue/b*\"\ndead_letter = \"a\"\n[queues.a]\ndead_letter = \"b\"\n";
    assert_error(text, "queues.a.dead_letter", 5, 1, "a -> b -> a");
}

#[test]
fn validate_a_config_built_in_code() {
    let mut c = Config::default();
    assert!(c.validate(Path::new("code")).is_ok());
    c.heartbeat.grace = 0.5;
    let e = c.validate(Path::new("code")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("heartbeat.grace"));
    assert_eq!(e.line, None);
    assert_eq!(
        e.to_string(),
        "code: key `heartbeat.grace`: must be a finite number >= 1.0, got 0.5"
    );
}

// ---- [[tls]] listeners ----

const TLS: &str =
    "[[tls]]\nlisten = \"127.0.0.1:61614\"\ncert = \"server.crt\"\nkey = \"server.key\"\n";

#[test]
fn tls_listener_parses_with_defaults() {
    let c = parse(TLS).unwrap();
    assert_eq!(c.tls.len(), 1);
    let t = &c.tls[0];
    assert_eq!(t.listen, "127.0.0.1:61614".parse().unwrap());
    assert_eq!(t.cert, PathBuf::from("server.crt"));
    assert_eq!(t.key, PathBuf::from("server.key"));
    assert_eq!(t.client_ca, None);
    assert!(!t.require_client_cert);
    // Files are not opened by validation: they need not exist here.
    assert!(!Path::new("server.crt").exists());
}

#[test]
fn tls_listener_alone_is_enough() {
    assert!(parse(&format!("[server]\nlisten = []\n{TLS}")).is_ok());
}

#[test]
fn tls_listener_needs_listen_cert_and_key() {
    for (missing, text) in [
        ("listen", "[[tls]]\ncert = \"a\"\nkey = \"b\"\n"),
        ("cert", "[[tls]]\nlisten = \"127.0.0.1:1\"\nkey = \"b\"\n"),
        ("key", "[[tls]]\nlisten = \"127.0.0.1:1\"\ncert = \"a\"\n"),
    ] {
        let e = parse(text).unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
        assert!(e.key.as_deref().unwrap_or("").starts_with("tls"), "{e}");
        assert!(e.message.contains(&format!("`{missing}`")), "{e}");
    }
}

#[test]
fn tls_listener_fields() {
    assert_error(
        "[[tls]]\nlisten = \"127.0.0.1:1\"\ncert = \"\"\nkey = \"b\"\n",
        "tls[0].cert",
        3,
        1,
        "certificate chain",
    );
    assert_error(
        &format!("{TLS}[[tls]]\nlisten = \"127.0.0.1:2\"\ncert = \"a\"\nkey = \"\"\n"),
        "tls[1].key",
        8,
        1,
        "private key",
    );
    assert_error(
        &format!("{TLS}client_ca = \"\"\n"),
        "tls[0].client_ca",
        5,
        1,
        "CA certificates",
    );
    assert_error(
        &format!("{TLS}require_client_cert = true\n"),
        "tls[0].require_client_cert",
        5,
        1,
        "needs `client_ca`",
    );
    assert!(parse(&format!(
        "{TLS}client_ca = \"ca.pem\"\nrequire_client_cert = true\n"
    ))
    .is_ok());
    assert_error(
        &format!("{TLS}port = 1\n"),
        "tls[0].port",
        5,
        1,
        "unknown field",
    );
}

#[test]
fn tls_listen_address_clashes() {
    let text = format!("[server]\nlisten = [\"127.0.0.1:61614\"]\n{TLS}");
    assert_error(
        &text,
        "tls[0].listen",
        4,
        1,
        "already used by `server.listen[0]`",
    );
}

#[test]
fn failure_delay_default_and_override() {
    let c = parse("").unwrap();
    assert_eq!(c.auth.failure_delay(), std::time::Duration::from_secs(1));
    let c = parse("[auth]\nfailure_delay_ms = 0\n").unwrap();
    assert_eq!(c.auth.failure_delay(), std::time::Duration::ZERO);
}

#[test]
fn anonymous_is_a_reserved_user_name() {
    let text = format!("[[auth.users]]\nname = \"anonymous\"\npassword_hash = \"{HASH}\"\n");
    assert_error(&text, "auth.users[0].name", 2, 1, "reserved");
}

#[test]
fn password_hash_shape() {
    for bad in [
        "$argon2id$",
        "$argon2id$v=19$m=19456,t=2,p=1",
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA",
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$",
        "$argon2id$v=19$m=19456,t=2,p=1$c2F sdA$aGFzaA",
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA$extra",
        "$argon2id$v=19$m19456$c2FsdA$aGFzaA",
    ] {
        let text = format!("[[auth.users]]\nname = \"alice\"\npassword_hash = \"{bad}\"\n");
        assert_error(&text, "auth.users[0].password_hash", 3, 1, "PHC string");
    }
    for good in [HASH, "$argon2id$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g"] {
        let text = format!("[[auth.users]]\nname = \"alice\"\npassword_hash = \"{good}\"\n");
        assert!(parse(&text).is_ok(), "{good}");
    }
}
