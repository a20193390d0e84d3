//! The configuration file shared with the Perl `aemp` tool: reading what
//! the reference wrote, writing what it reads, resolution order, atomic
//! saves and broken files.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use aemp::config::{ConfigError, ConfigFile, NodeConfig};
use aemp::{Node, NodeBuilder};
use serde_json::{Map, Value, json};

/// Written by the Perl `aemp` tool (AnyEvent::MP 1.30):
/// `aemp setsecret s3cret monitor_timeout 5 setnodelay 0 profile server
/// setnodeid srv/ binds 4040,4041 seeds 10.0.0.1:4040 setservices
/// Aemp::Echo::start addservice '["Pkg::f",1,"x"]'`, then
/// `aemp profile worker parent server connect_interval 0.5 addbind
/// 127.0.0.1:0 setframing_format '["json"]'`.
const PERL_RC: &str = include_str!("fixtures/perl-rc.json");

fn temp_rc(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("rc");
    std::fs::write(&path, text).expect("write rc");
    (dir, path)
}

#[test]
fn a_file_the_perl_tool_wrote_reads_with_its_meaning() {
    let (_dir, path) = temp_rc(PERL_RC);
    let file = ConfigFile::load(&path).unwrap();
    let (values, overridden) = file.resolve("worker", &Map::new()).unwrap();
    assert!(overridden.is_empty());
    let cfg = NodeConfig::from_values("worker", &values).unwrap();
    assert_eq!(cfg.node_id, "srv/"); // from the parent profile
    assert_eq!(cfg.binds, ["127.0.0.1:0"]); // the profile beats its parent
    assert_eq!(cfg.seeds, ["10.0.0.1:4040"]);
    assert_eq!(
        cfg.secret.as_ref().map(|s| s.as_bytes()),
        Some(&b"s3cret"[..])
    );
    // the Perl tool writes numbers and booleans as strings
    assert_eq!(cfg.monitor_timeout, Duration::from_secs(5));
    assert_eq!(cfg.connect_interval, Duration::from_millis(500));
    assert!(!cfg.nodelay, "\"0\" is false in Perl");
    assert_eq!(cfg.framings, [aemp::wire::Framing::Json]);
    assert_eq!(
        cfg.services,
        [json!("Aemp::Echo::start"), json!(["Pkg::f", 1, "x"])]
    );

    // the parent alone: its own binds, the global secret
    let (values, _) = file.resolve("server", &Map::new()).unwrap();
    let cfg = NodeConfig::from_values("server", &values).unwrap();
    assert_eq!(cfg.binds, ["4040", "4041"]);
    assert!(!cfg.nodelay, "the global section applies to every profile");
}

#[test]
fn round_trip_keeps_everything_including_unknown_keys() {
    // relaxed JSON as JSON::XS reads it: comments, trailing commas
    let relaxed = r#"{
   # written by hand
   "version" : 1,
   "secret" : "s3cret",      # the shared secret
   "x-unknown" : {"keep": ["me", 1, true, null],},
   "monitor_timeout" : "5",
   "profile" : {
      "server" : {
         "binds" : ["4040", "4041",],
         "x-later-version" : 42,
      },
   },
}
"#;
    let (_dir, path) = temp_rc(relaxed);
    let mut file = ConfigFile::load(&path).unwrap();
    file.profile_mut("server")
        .insert("nodeid".into(), json!("srv/"));
    file.save().unwrap();

    let saved = std::fs::read_to_string(&path).unwrap();
    let strict: Value = serde_json::from_str(&saved).expect("saved file is strict JSON");
    assert_eq!(
        strict,
        json!({
            "version": 1,
            "secret": "s3cret",
            "x-unknown": {"keep": ["me", 1, true, null]},
            "monitor_timeout": "5",
            "profile": {"server": {
                "binds": ["4040", "4041"],
                "x-later-version": 42,
                "nodeid": "srv/",
            }},
        })
    );
    // JSON::XS pretty style, as the Perl tool writes it
    assert!(saved.contains("\n   \"secret\" : \"s3cret\",\n"), "{saved}");
    assert!(saved.ends_with("}\n"));
    // and it reads back to the same thing
    assert_eq!(ConfigFile::load(&path).unwrap().root(), file.root());

    // the reference's own file survives a load/save unchanged in meaning
    let (_dir2, path2) = temp_rc(PERL_RC);
    let perl = ConfigFile::load(&path2).unwrap();
    perl.save().unwrap();
    let before: Value = serde_json::from_str(PERL_RC).unwrap();
    let after: Value = serde_json::from_str(&std::fs::read_to_string(&path2).unwrap()).unwrap();
    assert_eq!(before, after);
}

#[test]
fn a_missing_file_is_a_new_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent");
    let file = ConfigFile::load(&path).unwrap();
    assert_eq!(Value::Object(file.root().clone()), json!({"version": 1}));
    let (values, _) = file.resolve("anyhost", &Map::new()).unwrap();
    let cfg = NodeConfig::from_values("anyhost", &values).unwrap();
    assert_eq!(
        cfg.node_id, "anyhost",
        "the node id defaults to the profile name"
    );
    assert_eq!(cfg.binds, ["*"], "binds default to *");
    assert!(!path.exists(), "loading does not create the file");
}

#[test]
fn explicit_arguments_are_the_weakest() {
    let mut file = ConfigFile::new("unused");
    file.root_mut().insert("secret".into(), json!("global"));
    file.root_mut().insert("connect_interval".into(), json!(7));
    let base = file.profile_mut("base");
    base.insert("seeds".into(), json!(["base:1"]));
    base.insert("connect_interval".into(), json!(3));
    let p = file.profile_mut("p");
    p.insert("parent".into(), json!("base"));
    p.insert("seeds".into(), json!(["p:1"]));

    let mut explicit = Map::new();
    explicit.insert("secret".into(), json!("arg")); // loses to global
    explicit.insert("seeds".into(), json!(["arg:1"])); // loses to the profile
    explicit.insert("connect_interval".into(), json!(3)); // same value: no warning
    explicit.insert("nodeid".into(), json!("fromarg")); // nothing overrides it
    explicit.insert("monitor_timeout".into(), json!(9)); // beats the default
    let (values, mut overridden) = file.resolve("p", &explicit).unwrap();
    assert_eq!(values["secret"], json!("global"));
    assert_eq!(values["seeds"], json!(["p:1"]));
    assert_eq!(values["connect_interval"], json!(3)); // parent beats global
    assert_eq!(values["nodeid"], json!("fromarg"));
    assert_eq!(values["monitor_timeout"], json!(9));
    overridden.sort();
    assert_eq!(overridden, ["secret", "seeds"]);
}

#[test]
fn comma_separated_strings_are_lists_and_strings_are_numbers() {
    let mut values = Map::new();
    values.insert("seeds".into(), json!("a:1,b:2"));
    values.insert("binds".into(), json!("127.0.0.1:0"));
    values.insert("monitor_timeout".into(), json!("2.5"));
    values.insert("nodelay".into(), json!(""));
    values.insert("services".into(), json!("A::x,B::"));
    // `$binds ||= ["*"]`: a false value is the default, `[]` is no listener
    for (binds, want) in [
        (json!(null), vec!["*"]),
        (json!(""), vec!["*"]),
        (json!([]), vec![]),
    ] {
        let mut only = Map::new();
        only.insert("binds".into(), binds);
        assert_eq!(NodeConfig::from_values("p", &only).unwrap().binds, want);
    }
    let cfg = NodeConfig::from_values("p", &values).unwrap();
    assert_eq!(cfg.seeds, ["a:1", "b:2"]);
    assert_eq!(cfg.binds, ["127.0.0.1:0"]);
    assert_eq!(cfg.monitor_timeout, Duration::from_millis(2500));
    assert!(!cfg.nodelay);
    assert_eq!(cfg.services, [json!("A::x"), json!("B::")]);

    // a value of the wrong kind is an error naming the key
    values.insert("monitor_timeout".into(), json!("soon"));
    match NodeConfig::from_values("p", &values) {
        Err(ConfigError::Value { key, .. }) => assert_eq!(key, "monitor_timeout"),
        other => panic!("expected a value error, got {other:?}"),
    }
}

#[test]
fn saving_is_atomic_private_and_keeps_a_backup() {
    let (dir, path) = temp_rc("{\"version\":1,\"secret\":\"old\"}\n");
    let mut file = ConfigFile::load(&path).unwrap();
    file.root_mut().insert("secret".into(), json!("new"));
    file.save().unwrap();

    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the file holds secrets");
    let backup = std::fs::read_to_string(dir.path().join("rc~")).unwrap();
    assert_eq!(backup, "{\"version\":1,\"secret\":\"old\"}\n");
    assert!(!dir.path().join("rc~new~").exists(), "no temp file left");
    let now = ConfigFile::load(&path).unwrap();
    assert_eq!(now.root()["secret"], json!("new"));

    // a leftover temp file of another mode does not leak into the result
    let leftover = dir.path().join("rc~new~");
    std::fs::write(&leftover, "old junk").unwrap();
    std::fs::set_permissions(&leftover, std::fs::Permissions::from_mode(0o644)).unwrap();
    file.save().unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // a second save replaces the backup with the previous version
    file.root_mut().insert("secret".into(), json!("newer"));
    file.save().unwrap();
    let backup = ConfigFile::load(dir.path().join("rc~")).unwrap();
    assert_eq!(backup.root()["secret"], json!("new"));

    // a save that cannot write its temp file is an error naming it, and
    // the old file is untouched (a directory in the way stops even root)
    std::fs::create_dir(dir.path().join("rc~new~")).unwrap();
    file.root_mut().insert("secret".into(), json!("lost"));
    let err = file.save().expect_err("temp file is a directory");
    assert!(err.to_string().contains("rc~new~"), "{err}");
    let now = ConfigFile::load(&path).unwrap();
    assert_eq!(now.root()["secret"], json!("newer"));
}

#[test]
fn a_broken_file_is_an_error_with_file_and_position() {
    for (text, line, column) in [
        (
            "{\n   \"secret\" : \"x\",\n   \"binds\" : [1,,2]\n}\n",
            3,
            17,
        ),
        ("{\n  # fine\n  \"a\": 1\n  \"b\": 2\n}", 4, 3),
        ("{\"unterminated\": \"", 1, 18),
    ] {
        let (_dir, path) = temp_rc(text);
        match ConfigFile::load(&path) {
            Err(e @ ConfigError::Parse { .. }) => {
                let ConfigError::Parse {
                    line: l, column: c, ..
                } = &e
                else {
                    unreachable!()
                };
                assert_eq!((*l, *c), (line, column), "{text:?}: {e}");
                let shown = e.to_string();
                assert!(
                    shown.starts_with(&format!("{}:{line}:{column}: ", path.display())),
                    "{shown}"
                );
            }
            other => panic!("{text:?}: expected a parse error, got {other:?}"),
        }
    }
    let (_dir, path) = temp_rc("[\"not\", \"an object\"]");
    assert!(matches!(
        ConfigFile::load(&path),
        Err(ConfigError::NotAnObject(_))
    ));
    let (_dir, path) = temp_rc("{\"version\":1}\u{0}\u{ff}");
    assert!(ConfigFile::load(&path).is_err());
    let (_dir, path) = temp_rc("");
    std::fs::write(&path, b"{\n  \"a\":\n  \"\xff\"}").unwrap();
    let err = ConfigFile::load(&path).unwrap_err();
    assert!(err.to_string().ends_with(":3:4: not UTF-8"), "{err}");
}

#[test]
fn a_node_starts_from_a_profile() {
    let mut file = ConfigFile::new("unused");
    file.root_mut().insert("secret".into(), json!("s"));
    let p = file.profile_mut("cfgnode");
    p.insert("binds".into(), json!(["127.0.0.1:0"]));
    p.insert(
        "services".into(),
        json!([["Test::start", "hello"], "Test::plain"]),
    );

    let (tx, rx) = std::sync::mpsc::channel();
    let tx2 = tx.clone();
    actix_rt::System::new().block_on(async move {
        let node = NodeBuilder::from_config(&file, "cfgnode")
            .unwrap()
            .plain_fn("Test::start", move |_node, args| {
                let _ = tx.send(args.to_vec());
                Ok(())
            })
            .plain_fn("Test::plain", move |_node, args| {
                let _ = tx2.send(args.to_vec());
                Ok(())
            })
            .start()
            .await
            .unwrap();
        assert_eq!(node.id(), "cfgnode", "the node id defaults to the profile");
        assert_eq!(node.listen_addrs().len(), 1);
        assert!(node.listen_addrs()[0].ip().is_loopback());
        node.shutdown();

        // an unknown service is a clear start-up error
        let mut bad = ConfigFile::new("unused");
        bad.profile_mut("bad")
            .insert("services".into(), json!(["No::such"]));
        bad.profile_mut("bad").insert("binds".into(), json!([]));
        let err = Node::builder()
            .config(
                NodeConfig::from_values("bad", &bad.resolve("bad", &Map::new()).unwrap().0)
                    .unwrap(),
            )
            .start()
            .await
            .expect_err("unknown service");
        assert!(err.to_string().contains("No::such"), "{err}");
    });
    // services are called in order, with their arguments
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        [json!("hello")]
    );
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        Vec::<Value>::new()
    );
}

#[test]
fn perl_only_services_are_skipped_when_inherited_and_refused_in_the_own_profile() {
    // aemp's policy for a file shared with Perl nodes (NodeConfig::
    // inherited_services; Perl refuses an unloadable service, Kernel.pm
    // 448-458): "worker" inherits `services` from its parent "server"
    let (_dir, path) = temp_rc(PERL_RC);
    let mut file = ConfigFile::load(&path).unwrap();
    // no dialling out of the test
    file.profile_mut("worker").insert("seeds".into(), json!([]));
    file.root_mut().insert("monitor_timeout".into(), json!("1"));
    let (cfg, _) = file.node_config("worker", &Map::new()).unwrap();
    assert!(cfg.inherited_services);
    assert!(
        !file
            .node_config("server", &Map::new())
            .unwrap()
            .0
            .inherited_services
    );

    let (tx, rx) = std::sync::mpsc::channel::<Vec<Value>>();
    actix_rt::System::new().block_on(async move {
        let echo = |tx: std::sync::mpsc::Sender<Vec<Value>>| {
            move |_: &Node, args: Vec<Value>| {
                let _ = tx.send(args);
                Ok(())
            }
        };
        // inherited: the implemented one runs, the Perl-only Pkg::f is
        // skipped
        let node = NodeBuilder::from_config(&file, "worker")
            .unwrap()
            .plain_fn("Aemp::Echo::start", echo(tx.clone()))
            .start()
            .await
            .expect("inherited unknown services are skipped");
        node.shutdown();

        // from the global section: skipped too
        let mut global = file.clone();
        global
            .root_mut()
            .insert("services".into(), json!(["MyApp::", "Aemp::Echo::start"]));
        global
            .profile_mut("lone")
            .insert("binds".into(), json!(["127.0.0.1:0"]));
        let node = NodeBuilder::from_config(&global, "lone")
            .unwrap()
            .plain_fn("Aemp::Echo::start", echo(tx.clone()))
            .start()
            .await
            .expect("global unknown services are skipped");
        node.shutdown();

        // listed in the node's own profile: refused, as Perl does
        let mut own = file.clone();
        own.profile_mut("worker")
            .insert("services".into(), json!(["MyApp::"]));
        let err = NodeBuilder::from_config(&own, "worker")
            .unwrap()
            .start()
            .await
            .expect_err("an unknown service of the own profile");
        assert!(err.to_string().contains("MyApp::"), "{err}");

        // an inherited service that fails still refuses the start
        let err = NodeBuilder::from_config(&file, "worker")
            .unwrap()
            .plain_fn("Aemp::Echo::start", |_, _| Err("broken".into()))
            .start()
            .await
            .expect_err("a failing service");
        assert!(err.to_string().contains("Aemp::Echo::start"), "{err}");
    });
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        Vec::<Value>::new()
    );
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        Vec::<Value>::new()
    );
    assert!(rx.try_recv().is_err());
}
