use super::*;

#[test]
fn durations() {
    assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
    assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
    assert!(parse_duration("soon").is_err());
    assert!(parse_duration("5 parsecs").is_err());
}

#[test]
fn flags_beat_the_file_which_beats_defaults() {
    let dir = std::env::temp_dir().join(format!("confab-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("confab.toml");
    std::fs::write(&file, "http = \"127.0.0.1:9000\"\ntcp = \"127.0.0.1:9001\"\ngrace = \"3s\"\n")
        .unwrap();
    let args = ServeArgs {
        http: Some("127.0.0.1:0".into()),
        config: Some(file.clone()),
        ..ServeArgs::default()
    };
    let config = args.resolve().unwrap();
    assert_eq!(config.http, "127.0.0.1:0");
    assert_eq!(config.tcp, "127.0.0.1:9001");
    assert_eq!(config.hub.grace, Duration::from_secs(3));
    assert_eq!(config.data, PathBuf::from("./confab-data"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_defaults_are_those_of_the_protocol() {
    let config = ServeArgs::default().resolve().unwrap();
    assert_eq!(config.http, "127.0.0.1:8080");
    assert_eq!(config.tcp, "127.0.0.1:6789");
    assert_eq!(config.data, PathBuf::from("./confab-data"));
    assert_eq!(config.hub.grace, Duration::from_secs(10));
    assert_eq!(config.hub.limits.frame_bytes, 64 * 1024);
    assert_eq!(config.hub.limits.body_chars, 4000);
}

#[test]
fn a_cluster_needs_a_shared_database_and_a_sane_lease() {
    let cluster = |database: Option<&str>, lease: Option<&str>| ServeArgs {
        cluster: Some("redis://127.0.0.1:6379".into()),
        node: Some("n1".into()),
        database: database.map(str::to_owned),
        node_lease: lease.map(str::to_owned),
        ..ServeArgs::default()
    };
    let error = cluster(None, None).resolve().unwrap_err().to_string();
    assert!(error.contains("cluster") && error.contains("postgres"), "{error}");
    let error = cluster(Some("sqlite://x.db"), None).resolve().unwrap_err().to_string();
    assert!(error.contains("postgres"), "{error}");
    let postgres = Some("postgres://127.0.0.1/test");
    let config = cluster(postgres, None).resolve().unwrap();
    let joined = config.cluster.expect("a cluster config");
    assert_eq!(joined.url, "redis://127.0.0.1:6379");
    assert_eq!(joined.lease, Duration::from_secs(10), "the default lease");
    let config = cluster(postgres, Some("3s")).resolve().unwrap();
    assert_eq!(config.cluster.unwrap().lease, Duration::from_secs(3));
    assert!(cluster(postgres, Some("10ms")).resolve().is_err(), "a lease too short to renew");
    let unnamed = ServeArgs { node: None, ..cluster(postgres, None) };
    assert!(unnamed.resolve().unwrap_err().to_string().contains("--node"));
    let unsafe_name = ServeArgs { node: Some("a/b".into()), ..cluster(postgres, None) };
    assert!(unsafe_name.resolve().is_err());
    let bad = ServeArgs { cluster: Some("http://x".into()), ..ServeArgs::default() };
    assert!(bad.resolve().unwrap_err().to_string().contains("redis://"));
    let stray = ServeArgs { node_lease: Some("3s".into()), ..ServeArgs::default() };
    assert!(stray.resolve().unwrap_err().to_string().contains("--cluster"));
    assert!(ServeArgs::default().resolve().unwrap().cluster.is_none());
}

#[test]
fn a_cluster_may_spread_its_rooms_over_several_redis_shards() {
    let cluster = |url: &str| ServeArgs {
        cluster: Some(url.into()),
        node: Some("n1".into()),
        database: Some("postgres://127.0.0.1/test".into()),
        ..ServeArgs::default()
    };
    let config = cluster("redis://127.0.0.1:6379, redis://127.0.0.1:6380").resolve().unwrap();
    let shards = config.cluster.expect("a cluster config");
    assert_eq!(shards.shards(), ["redis://127.0.0.1:6379", "redis://127.0.0.1:6380"]);
    let error = cluster("redis://127.0.0.1:6379,http://x").resolve().unwrap_err().to_string();
    assert!(error.contains("http://x") && error.contains("redis://"), "{error}");
    let error = cluster("redis://a:1,redis://b:1,redis://a:1").resolve().unwrap_err().to_string();
    assert!(error.contains("twice"), "{error}");
}

#[test]
fn unknown_keys_in_the_file_are_refused() {
    let dir = std::env::temp_dir().join(format!("confab-config-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("confab.toml");
    std::fs::write(&file, "htp = \"127.0.0.1:9000\"\n").unwrap();
    let error = ServeArgs { config: Some(file), ..ServeArgs::default() }.resolve().unwrap_err();
    assert!(error.to_string().contains("htp"), "{error}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn boards_and_bad_values() {
    let config = ServeArgs {
        boards: Some(vec!["main".into(), "Random".into()]),
        board_backlog: Some(5),
        ..ServeArgs::default()
    }
    .resolve()
    .unwrap();
    let names: Vec<_> = config.hub.boards.iter().map(|b| (b.name.as_str(), b.backlog)).collect();
    assert_eq!(names, [("main", 5), ("random", 5)]);
    let bad = ServeArgs { boards: Some(vec!["no spaces".into()]), ..ServeArgs::default() };
    assert!(bad.resolve().is_err());
    let bad = ServeArgs { database: Some("mysql://x".into()), ..ServeArgs::default() };
    assert!(bad.resolve().unwrap_err().to_string().contains("database"));
}

#[test]
fn rates() {
    assert_eq!(parse_rate("off").unwrap(), None);
    assert_eq!(
        parse_rate("10/s").unwrap(),
        Some(Rate { every: Duration::from_millis(100), burst: 20 })
    );
    assert_eq!(
        parse_rate("120/m,burst=40").unwrap(),
        Some(Rate { every: Duration::from_millis(500), burst: 40 })
    );
    for bad in ["10", "10/y", "x/s", "0/s", "5/s,burst=0", "5/s,bust=3"] {
        assert!(parse_rate(bad).is_err(), "{bad}");
    }
    let config =
        ServeArgs { post_rate: Some("off".into()), ..ServeArgs::default() }.resolve().unwrap();
    assert_eq!(config.hub.rates.post, None);
    assert!(config.hub.rates.join.is_some(), "the others keep their defaults");
}

#[test]
fn listen_addresses_want_a_host_and_a_port() {
    for fine in ["127.0.0.1:8080", "0.0.0.0:0", "[::1]:8080", "localhost:80"] {
        assert_eq!(listen_address("http", fine.to_owned()).unwrap(), fine);
    }
    let bare = listen_address("http", "8081".into()).unwrap_err().to_string();
    assert!(bare.contains("127.0.0.1:8081") && bare.contains("0.0.0.0:8081"), "{bare}");
    for bad in ["localhost", "127.0.0.1:", "127.0.0.1:99999", ""] {
        assert!(listen_address("tcp", bad.to_owned()).is_err(), "{bad:?}");
    }
}

#[test]
fn an_unknown_variable_is_found_with_its_closest_setting() {
    let known = vec!["CONFAB_GRACE".to_owned(), "CONFAB_HTTP".to_owned(), "CONFAB_LOG".to_owned()];
    let set = ["CONFAB_GRCE", "CONFAB_HTTP", "CONFAB_TEST_REDIS", "CONFAB_SOMETHING_ELSE", "PATH"];
    let unknown = unknown_env(set.iter().map(|s| (*s).to_owned()), &known);
    assert_eq!(
        unknown,
        vec![
            ("CONFAB_GRCE".to_owned(), Some("CONFAB_GRACE")),
            ("CONFAB_SOMETHING_ELSE".to_owned(), None)
        ]
    );
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(env_name("node-lease"), "CONFAB_NODE_LEASE");
}

#[test]
fn tls_needs_both_its_files() {
    let cert = ServeArgs { tls_cert: Some("c.pem".into()), ..ServeArgs::default() };
    assert!(cert.resolve().unwrap_err().to_string().contains("--tls-key"));
    let key = ServeArgs { tls_key: Some("k.pem".into()), ..ServeArgs::default() };
    assert!(key.resolve().unwrap_err().to_string().contains("--tls-cert"));
    let both = ServeArgs {
        tls_cert: Some("c.pem".into()),
        tls_key: Some("k.pem".into()),
        ..ServeArgs::default()
    };
    let files = both.resolve().unwrap().tls.expect("tls on");
    assert_eq!((files.cert.to_str(), files.key.to_str()), (Some("c.pem"), Some("k.pem")));
    assert!(ServeArgs::default().resolve().unwrap().tls.is_none());
    let off = ServeArgs { tls_handshake_rate: Some("off".into()), ..ServeArgs::default() };
    assert_eq!(off.resolve().unwrap().edge.handshake_rate, None);
    let bad = ServeArgs { tls_handshake_rate: Some("lots".into()), ..ServeArgs::default() };
    assert!(bad.resolve().unwrap_err().to_string().contains("tls-handshake-rate"));
}
