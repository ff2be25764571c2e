use super::*;

fn err_text(toml: &str) -> String {
    match RawConfig::from_toml(toml).and_then(RawConfig::validate) {
        Ok(_) => panic!("config was accepted:\n{toml}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn empty_file_gives_embedded_defaults() {
    let c = RawConfig::from_toml("")
        .and_then(RawConfig::validate)
        .expect("defaults");
    assert_eq!(c.node_id, 1);
    assert_eq!(c.data_dir, PathBuf::from("./regmesh-data"));
    assert_eq!(c.listen.len(), 2);
    assert_eq!(c.listen[0].transport, Transport::Udp);
    assert_eq!(c.listen[0].addr, "127.0.0.1:5060".parse().expect("addr"));
    assert_eq!(c.listen[1].transport, Transport::Tcp);
    assert_eq!(c.rpc_listen, Some("127.0.0.1:9060".parse().expect("addr")));
    assert_eq!(
        c.rpc_socket,
        Some(PathBuf::from("./regmesh-data/regmesh.sock"))
    );
    assert!(!c.auth.enabled);
    assert_eq!(c.policy.default_expires, 3600);
    assert_eq!(
        c.store.commit_interval,
        regmesh_location::store::COMMIT_INTERVAL
    );
}

#[test]
fn commit_interval_is_read() {
    let c = RawConfig::from_toml("[store]\ncommit_interval = \"750us\"")
        .and_then(RawConfig::validate)
        .expect("valid");
    assert_eq!(c.store.commit_interval, Duration::from_micros(750));
}

#[test]
fn overload_queue_delay_defaults_to_50ms_and_zero_turns_it_off() {
    let c = RawConfig::from_toml("")
        .and_then(RawConfig::validate)
        .expect("valid");
    assert_eq!(c.overload_queue_delay, Some(Duration::from_millis(50)));
    let c = RawConfig::from_toml("[sip]\noverload_queue_delay = \"0ms\"")
        .and_then(RawConfig::validate)
        .expect("valid");
    assert_eq!(c.overload_queue_delay, None);
    let c = RawConfig::from_toml("[sip]\noverload_queue_delay = \"400ms\"")
        .and_then(RawConfig::validate)
        .expect("valid");
    assert_eq!(c.overload_queue_delay, Some(Duration::from_millis(400)));
}

#[test]
fn udp_threads_default_to_one_per_two_cores_and_can_be_set() {
    let c = RawConfig::from_toml("")
        .and_then(RawConfig::validate)
        .expect("valid");
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    assert_eq!(c.udp_threads, (cores / 2).max(1));
    let c = RawConfig::from_toml("[sip]\nudp_threads = 3")
        .and_then(RawConfig::validate)
        .expect("valid");
    assert_eq!(c.udp_threads, 3);
}

#[test]
fn one_udp_standby_thread_by_default_and_none_can_be_asked() {
    let c = RawConfig::from_toml("")
        .and_then(RawConfig::validate)
        .expect("valid");
    assert_eq!(c.udp_standby_threads, 1);
    let c = RawConfig::from_toml("[sip]\nudp_standby_threads = 0")
        .and_then(RawConfig::validate)
        .expect("valid");
    assert_eq!(c.udp_standby_threads, 0);
}

#[test]
fn udp_receive_pause_defaults_to_200us_and_zero_turns_it_off() {
    let c = RawConfig::from_toml("")
        .and_then(RawConfig::validate)
        .expect("valid");
    assert_eq!(c.udp_receive_pause, Duration::from_micros(200));
    let c = RawConfig::from_toml("[sip]\nudp_receive_pause = \"0us\"")
        .and_then(RawConfig::validate)
        .expect("valid");
    assert_eq!(c.udp_receive_pause, Duration::ZERO);
    let c = RawConfig::from_toml("[sip]\nudp_receive_pause = \"1ms\"")
        .and_then(RawConfig::validate)
        .expect("valid");
    assert_eq!(c.udp_receive_pause, Duration::from_millis(1));
}

/// Every table rejects a key it does not know, and the message names it
/// (hickory's `test_reject_unknown_fields`).
#[test]
fn unknown_keys_are_rejected_in_every_table() {
    for table in ["node", "sip", "registrar", "auth", "store", "rpc", "log"] {
        let text = format!("[{table}]\nno_such_key = 1\n");
        let e = err_text(&text);
        assert!(e.contains("no_such_key"), "[{table}]: {e}");
    }
    let e = err_text("[sip.tls]\ncert = \"a\"\nkey = \"b\"\nbogus = 1\n");
    assert!(e.contains("bogus"), "{e}");
    let e = err_text("toplevel = 1\n");
    assert!(e.contains("toplevel"), "{e}");
}

#[test]
fn example_configs_parse_and_validate() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/config");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("examples/config exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        RawConfig::from_toml(&text)
            .and_then(RawConfig::validate)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        n += 1;
    }
    assert!(n >= 1, "no example configs found in {dir}");
}

#[test]
fn rules_name_their_key() {
    let cases = [
        ("[node]\nid = 0", "node.id"),
        ("[sip]\nlisten = []", "sip.listen"),
        ("[sip]\nlisten = [\"sctp:127.0.0.1:5060\"]", "sip.listen"),
        ("[sip]\nlisten = [\"udp:127.0.0.1\"]", "sip.listen"),
        (
            "[sip]\nlisten = [\"udp:127.0.0.1:5060\", \"udp:127.0.0.1:5060\"]",
            "sip.listen",
        ),
        ("[sip]\nlisten = [\"tls:127.0.0.1:5061\"]", "sip.tls"),
        ("[sip]\nmax_message_size = 10", "sip.max_message_size"),
        ("[sip]\nidle_timeout = \"soon\"", "sip.idle_timeout"),
        (
            "[registrar]\nmin_expires = 100\ndefault_expires = 50",
            "registrar.default_expires",
        ),
        ("[registrar]\nmax_expires = 10", "registrar.max_expires"),
        ("[registrar]\noverflow = \"drop\"", "registrar.overflow"),
        ("[auth]\nenabled = true", "auth.secret"),
        ("[auth]\nsecret = \"short\"", "auth.secret"),
        ("[rpc]\nlisten = \"0.0.0.0:9060\"", "rpc.token"),
        ("[rpc]\nlisten = \"nonsense\"", "rpc.listen"),
        ("[log]\nformat = \"xml\"", "log.format"),
        ("[log]\nlevel = \"regmesh=loud\"", "log.level"),
        ("[sip]\nidle_timeout = \"0s\"", "sip.idle_timeout"),
        ("[auth]\nalgorithms = []", "auth.algorithms"),
        ("[auth]\nalgorithms = [\"SHA-512\"]", "auth.algorithms"),
        ("[auth]\nalgorithms = [\"MD5\", \"md5\"]", "auth.algorithms"),
        ("[store]\ncommit_interval = \"1s\"", "store.commit_interval"),
        (
            "[sip]\noverload_queue_delay = \"11s\"",
            "sip.overload_queue_delay",
        ),
        (
            "[sip]\noverload_queue_delay = \"soon\"",
            "sip.overload_queue_delay",
        ),
        (
            "[store]\ncommit_interval = \"fast\"",
            "store.commit_interval",
        ),
        ("[sip]\nudp_threads = 65", "sip.udp_threads"),
        ("[sip]\nudp_standby_threads = 65", "sip.udp_standby_threads"),
        (
            "[sip]\nudp_receive_pause = \"2ms\"",
            "sip.udp_receive_pause",
        ),
        (
            "[sip]\nudp_receive_pause = \"soon\"",
            "sip.udp_receive_pause",
        ),
    ];
    for (text, key) in cases {
        let e = err_text(text);
        assert!(
            e.contains(key),
            "{text:?} gave {e:?}, expected it to name {key}"
        );
    }
}

#[test]
fn non_loopback_rpc_with_token_is_accepted() {
    let c =
        RawConfig::from_toml("[rpc]\nlisten = \"0.0.0.0:9060\"\ntoken = \"0123456789abcdef0123\"")
            .and_then(RawConfig::validate)
            .expect("valid");
    assert_eq!(c.rpc_token.as_deref(), Some("0123456789abcdef0123"));
}

#[test]
fn check_config_output_hides_secrets() {
    let c = RawConfig::from_toml(
        "[auth]\nsecret = \"a-very-secret-nonce-key\"\n[rpc]\ntoken = \"a-very-secret-rpc-token\"",
    )
    .and_then(RawConfig::validate)
    .expect("valid");
    let text = c.effective_toml().expect("serializes");
    assert!(!text.contains("a-very-secret"), "{text}");
    assert!(text.contains("<redacted>"), "{text}");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("300s"), Some(Duration::from_secs(300)));
    assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
    assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("500us"), Some(Duration::from_micros(500)));
    assert_eq!(parse_duration("5"), None);
    assert_eq!(parse_duration("s"), None);
    assert_eq!(parse_duration("5d"), None);
}

/// The documented production example stays a config the node accepts.
#[test]
fn the_production_example_is_valid() {
    let text = include_str!("../../../../examples/config/production.toml");
    let c = RawConfig::from_toml(text)
        .and_then(RawConfig::validate)
        .expect("examples/config/production.toml is valid");
    assert_eq!(c.overload_queue_delay, Some(Duration::from_millis(50)));
}
