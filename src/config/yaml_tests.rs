//! The YAML layer as users meet it, pinned when serde_yaml (archived) gave way to yaml_serde
//! (issue 15): the exact error text, with key path, line and column, of a set of bad configs,
//! and what YAML 1.1 habits (`on`/`off`/`yes`, leading-zero numbers, anchors, merge keys) do.
//! Every case here gave the same text with serde_yaml 0.9.34 as with yaml_serde 0.10.7
//! (DESIGN-NOTES, "The YAML parser"). Column numbers count from 1.
use super::*;

fn errors(yaml: &str) -> String {
    parse(yaml, None).unwrap_err().to_string()
}

fn ok(yaml: &str) -> Config {
    parse(yaml, None).unwrap_or_else(|e| panic!("{yaml:?}: {e}"))
}

/// (name, config, every error as `--check` prints it, one per line).
const BAD: &[(&str, &str, &str)] = &[
    (
        "bad01-unknown-top",
        "listen: \"127.0.0.1:1\"\nbogus: 1\n",
        "unknown field `bogus`, expected one of `listen`, `admin_listen`, `mode`, `reload_interval_secs`, `access_log`, `via`, `health_check`, `limits`, `domain_policy`, `upstream`, `workers`, `log_level`, `hash_key`, `retries`, `on_all_down`, `pools`, `rules`, `admin`, `access`, `reverse`, `tls`, `tls_listen` at line 2 column 1",
    ),
    (
        "bad02-unknown-upstream",
        "listen: \"127.0.0.1:1\"\nupstream:\n  - url: http://a:1\n    wieght: 2\n",
        "upstream[0]: unknown field `wieght`, expected one of `url`, `weight`, `priority`, `username`, `password` at line 4 column 5",
    ),
    (
        "bad03-unknown-pool-health",
        "listen: \"127.0.0.1:1\"\npools:\n  eu:\n    upstream: [{url: 'http://a:1'}]\n    health_check:\n      intervl_secs: 5\n",
        "pools.eu.health_check: unknown field `intervl_secs`, expected one of `interval_secs`, `timeout_secs`, `url`, `expect_status`, `fall`, `rise`, `probe_online` at line 6 column 7",
    ),
    (
        "bad04-type-workers",
        "listen: \"127.0.0.1:1\"\nworkers: many\n",
        "workers: invalid type: string \"many\", expected usize at line 2 column 10",
    ),
    (
        "bad05-negative-max-conn",
        "listen: \"127.0.0.1:1\"\nlimits:\n  max_connections: -1\n",
        "limits.max_connections: invalid type: integer `-1`, expected usize at line 3 column 20",
    ),
    (
        "bad06-enum-mode",
        "listen: \"127.0.0.1:1\"\nmode: fastest\n",
        "mode: unknown variant `fastest`, expected one of `round_robin`, `best`, `priority`, `random`, `least_conn`, `hash` at line 2 column 7",
    ),
    (
        "bad07-enum-policy",
        "listen: \"127.0.0.1:1\"\ndomain_policy:\n  mode: grey\n",
        "domain_policy.mode: unknown variant `grey`, expected one of `off`, `blacklist`, `whitelist` at line 3 column 9",
    ),
    (
        "bad08-unclosed-flow",
        "listen: \"127.0.0.1:1\"\nupstream: [{url: 'http://a:1'}\n",
        "did not find expected ',' or ']' at line 3 column 1, while parsing a flow sequence at line 2 column 11",
    ),
    (
        "bad09-tab-indent",
        "listen: \"127.0.0.1:1\"\nlimits:\n\tmax_connections: 5\n",
        "found character that cannot start any token at line 3 column 1, while scanning for the next token",
    ),
    (
        "bad10-duplicate-key",
        "listen: \"127.0.0.1:1\"\nworkers: 1\nworkers: 2\n",
        "duplicate field `workers`",
    ),
    (
        "bad11-missing-url",
        "listen: \"127.0.0.1:1\"\nupstream:\n  - weight: 2\n",
        "upstream[0]: missing field `url` at line 3 column 5",
    ),
    (
        "bad12-port-range",
        "listen: \"127.0.0.1:1\"\naccess:\n  connect_ports: [443, 70000]\n",
        "access.connect_ports[1]: invalid value: integer `70000`, expected u16 at line 3 column 24",
    ),
    (
        "bad13-scalar-for-list",
        "listen: \"127.0.0.1:1\"\nupstream: http://a:1\n",
        "upstream: invalid type: string \"http://a:1\", expected a sequence at line 2 column 11",
    ),
    (
        "bad14-match-not-list",
        "listen: \"127.0.0.1:1\"\nrules:\n  - {match: ['x.example'], via: direct}\n  - match: y.example\n    via: direct\n",
        "rules[1].match: invalid type: string \"y.example\", expected a sequence at line 4 column 12",
    ),
    (
        "bad15-empty",
        "",
        "listen: required unless reverse is set (e.g. \"127.0.0.1:8080\")",
    ),
    (
        "bad16-two-docs",
        "listen: \"127.0.0.1:1\"\n---\nlisten: \"127.0.0.1:1\"\n",
        "deserializing from YAML containing more than one document is not supported",
    ),
    (
        "bad17-unknown-anchor",
        "listen: \"127.0.0.1:1\"\nupstream: *nope\n",
        "unknown anchor at line 2 column 11",
    ),
    (
        "bad18-float-retries",
        "listen: \"127.0.0.1:1\"\nretries: 1.5\n",
        "retries: invalid type: floating point `1.5`, expected u32 at line 2 column 10",
    ),
    (
        "bad19-status-range",
        "listen: \"127.0.0.1:1\"\nhealth_check: {expect_status: 99999}\n",
        "health_check.expect_status: invalid value: integer `99999`, expected u16 at line 2 column 31",
    ),
    // bad20-deep-nesting: built in the test
    (
        "bad21-list-at-top",
        "- listen: \"127.0.0.1:1\"\n",
        "invalid type: sequence, expected struct RawConfig",
    ),
    (
        "bad22-bad-escape",
        "listen: \"127.0.0.1:1\\q\"\n",
        "found unknown escape character at line 1 column 21, while parsing a quoted scalar at line 1 column 9",
    ),
    (
        "bad23-user-missing-password",
        "listen: \"127.0.0.1:1\"\naccess:\n  users:\n    - username: bob\n",
        "access.users[0]: missing field `password` at line 4 column 7",
    ),
    (
        "bad24-port-missing",
        "listen: \"127.0.0.1:1\"\nupstream:\n  - url: http://a:1\n  - url: http://b\n",
        "upstream[1].url: port missing",
    ),
    (
        "bad25-unknown-nested-pool",
        "listen: \"127.0.0.1:1\"\npools:\n  eu:\n    upstreams: []\n",
        "pools.eu: unknown field `upstreams`, expected one of `upstream`, `mode`, `hash_key`, `retries`, `on_all_down`, `health_check` at line 4 column 5",
    ),
    (
        "bad26-bool-access-log",
        "listen: \"127.0.0.1:1\"\naccess_log: maybe\n",
        "access_log: invalid type: string \"maybe\", expected a boolean at line 2 column 13",
    ),
    (
        "bad27-indent-error",
        "listen: \"127.0.0.1:1\"\nupstream:\n  - url: http://a:1\n   weight: 2\n",
        "did not find expected '-' indicator at line 4 column 4, while parsing a block collection at line 3 column 3",
    ),
    (
        "bad28-null-listen",
        "listen:\n",
        "listen: required unless reverse is set (e.g. \"127.0.0.1:8080\")",
    ),
    (
        "odd02-policy-on",
        "listen: \"127.0.0.1:1\"\ndomain_policy:\n  mode: on\n",
        "domain_policy.mode: unknown variant `on`, expected one of `off`, `blacklist`, `whitelist` at line 3 column 9",
    ),
    (
        "odd03-policy-yes",
        "listen: \"127.0.0.1:1\"\ndomain_policy:\n  mode: yes\n",
        "domain_policy.mode: unknown variant `yes`, expected one of `off`, `blacklist`, `whitelist` at line 3 column 9",
    ),
    (
        "odd05-policy-Off",
        "listen: \"127.0.0.1:1\"\ndomain_policy:\n  mode: Off\n",
        "domain_policy.mode: unknown variant `Off`, expected one of `off`, `blacklist`, `whitelist` at line 3 column 9",
    ),
    (
        "odd06-policy-false",
        "listen: \"127.0.0.1:1\"\ndomain_policy:\n  mode: false\n",
        "domain_policy.mode: unknown variant `false`, expected one of `off`, `blacklist`, `whitelist` at line 3 column 9",
    ),
    (
        "odd07-access-log-yes",
        "listen: \"127.0.0.1:1\"\naccess_log: yes\n",
        "access_log: invalid type: string \"yes\", expected a boolean at line 2 column 13",
    ),
    (
        "odd08-access-log-on",
        "listen: \"127.0.0.1:1\"\naccess_log: on\n",
        "access_log: invalid type: string \"on\", expected a boolean at line 2 column 13",
    ),
    (
        "odd09-probe-online-off",
        "listen: \"127.0.0.1:1\"\nhealth_check: {probe_online: off}\n",
        "health_check.probe_online: invalid type: string \"off\", expected a boolean at line 2 column 30",
    ),
    (
        "odd13-connect-ports-0443",
        "listen: \"127.0.0.1:1\"\naccess:\n  connect_ports: [0443]\n",
        "access.connect_ports[0]: invalid type: string \"0443\", expected u16 at line 3 column 19",
    ),
    (
        "odd14-expect-status-0204",
        "listen: \"127.0.0.1:1\"\nhealth_check: {expect_status: 0204}\n",
        "health_check.expect_status: invalid type: string \"0204\", expected u16 at line 2 column 31",
    ),
    (
        "odd18-merge-key",
        "listen: \"127.0.0.1:1\"\nupstream:\n  - &base\n    url: http://a:1\n    username: u\n    password: p\n  - <<: *base\n    url: http://b:1\n",
        "upstream[1]: unknown field `<<`, expected one of `url`, `weight`, `priority`, `username`, `password` at line 7 column 5",
    ),
    (
        "odd19-merge-key-pool",
        "listen: \"127.0.0.1:1\"\nupstream: [{url: 'http://a:1'}]\npools:\n  eu: &eu\n    mode: hash\n    upstream: [{url: 'http://b:1'}]\n  us:\n    <<: *eu\n    mode: random\n",
        "pools.us: unknown field `<<`, expected one of `upstream`, `mode`, `hash_key`, `retries`, `on_all_down`, `health_check` at line 8 column 5",
    ),
    (
        "odd20-workers-quoted",
        "listen: \"127.0.0.1:1\"\nworkers: \"2\"\n",
        "workers: invalid type: string \"2\", expected usize at line 2 column 10",
    ),
    (
        "odd21-listen-port-only-int",
        "listen: 8080\n",
        "listen: \"8080\" is not an address (expected host:port, e.g. 127.0.0.1:8080 or [::1]:8080)",
    ),
    (
        "odd24-upper-key",
        "listen: \"127.0.0.1:1\"\nLISTEN: x\n",
        "unknown field `LISTEN`, expected one of `listen`, `admin_listen`, `mode`, `reload_interval_secs`, `access_log`, `via`, `health_check`, `limits`, `domain_policy`, `upstream`, `workers`, `log_level`, `hash_key`, `retries`, `on_all_down`, `pools`, `rules`, `admin`, `access`, `reverse`, `tls`, `tls_listen` at line 2 column 1",
    ),
];

#[test]
fn bad_configs_keep_their_error_text() {
    for (name, yaml, want) in BAD {
        assert_eq!(errors(yaml), *want, "{name}");
    }
}

#[test]
fn deep_nesting_is_a_type_error_not_a_crash() {
    let yaml = format!(
        "listen: \"127.0.0.1:1\"\nrules: {}{}\n",
        "[".repeat(200),
        "]".repeat(200)
    );
    assert_eq!(
        errors(&yaml),
        "rules[0]: invalid type: sequence, expected struct RawRule at line 2 column 9"
    );
}

const L: &str = "listen: \"127.0.0.1:1\"\n";

#[test]
fn domain_policy_mode_off_is_the_word_not_a_boolean() {
    // YAML 1.2 (both parsers): `off` is a plain string, so it names the variant, quoted or not.
    for v in ["off", "\"off\"", "'off'"] {
        let c = ok(&format!("{L}domain_policy:\n  mode: {v}\n"));
        assert_eq!(c.domain_policy.mode, PolicyMode::Off, "{v}");
    }
    // `on`, `yes`, `false` and `Off` are no variant: refused with the path, not read as a mode.
    // (The exact text of each is in BAD.)
    for v in ["on", "yes", "false", "Off"] {
        let e = errors(&format!("{L}domain_policy:\n  mode: {v}\n"));
        assert!(
            e.starts_with(&format!("domain_policy.mode: unknown variant `{v}`")),
            "{v}: {e}"
        );
    }
}

#[test]
fn booleans_are_true_and_false_only() {
    for (v, want) in [
        ("true", true),
        ("True", true),
        ("TRUE", true),
        ("false", false),
    ] {
        assert_eq!(ok(&format!("{L}access_log: {v}\n")).access_log, want, "{v}");
    }
    // YAML 1.1's yes/no/on/off are strings in YAML 1.2: a type error naming the key.
    for v in ["yes", "no", "on", "off", "y"] {
        assert_eq!(
            errors(&format!("{L}access_log: {v}\n")),
            format!(
                "access_log: invalid type: string \"{v}\", expected a boolean at line 2 column 13"
            )
        );
    }
}

#[test]
fn leading_zero_ports_are_decimal_in_strings_and_refused_as_numbers() {
    // Inside a string ferry parses the port itself, in decimal: 0808 is 808, never octal.
    let c = ok("listen: 127.0.0.1:0808\n");
    assert_eq!(c.listen, Some("127.0.0.1:808".parse().unwrap()));
    let c = ok(&format!(
        "{L}rules:\n  - match: [port:0808]\n    via: direct\n"
    ));
    assert_eq!(c.rules.lookup("x.example", None, 808), Some(Via::Direct));
    // Not 0o808 (no such thing) nor 0o1010.
    assert_eq!(c.rules.lookup("x.example", None, 520), None);
    // As a YAML number, digits with a leading zero are a string (YAML 1.2), so a number key
    // refuses them rather than guessing octal (YAML 1.1 would make 0443 = 291).
    assert_eq!(
        errors(&format!("{L}access:\n  connect_ports: [0443]\n")),
        "access.connect_ports[0]: invalid type: string \"0443\", expected u16 at line 3 column 19"
    );
    // Explicit radix prefixes are numbers.
    assert_eq!(ok(&format!("{L}workers: 0o2\n")).workers, 2);
    assert_eq!(ok(&format!("{L}workers: 0x2\n")).workers, 2);
    assert_eq!(ok(&format!("{L}workers: !!str 2\n")).workers, 2);
}

#[test]
fn anchors_and_aliases_share_a_list() {
    let c = ok(&format!(
        "{L}upstream: &ups\n  - url: http://a:1\n  - url: http://b:1\npools:\n  eu:\n    upstream: *ups\n"
    ));
    assert_eq!(c.pools.len(), 2);
    assert_eq!(c.pools[1].members.len(), 2);
    assert!(Arc::ptr_eq(
        &c.pools[0].members[1].state,
        &c.pools[1].members[1].state
    ));
    assert_eq!(
        errors(&format!("{L}upstream: *nope\n")),
        "unknown anchor at line 2 column 11"
    );
}

#[test]
fn merge_keys_are_refused_with_their_path() {
    // Neither parser applies `<<` when deserializing into a struct: it is an unknown key, and
    // the error says where. (Anchors and aliases of whole values work; see above.)
    assert_eq!(
        errors(&format!(
            "{L}upstream:\n  - &base\n    url: http://a:1\n    username: u\n    password: p\n  - <<: *base\n    url: http://b:1\n"
        )),
        "upstream[1]: unknown field `<<`, expected one of `url`, `weight`, `priority`, `username`, `password` at line 7 column 5"
    );
    assert!(errors(&format!(
        "{L}upstream: [{{url: 'http://a:1'}}]\npools:\n  eu: &eu\n    mode: hash\n    upstream: [{{url: 'http://b:1'}}]\n  us:\n    <<: *eu\n    mode: random\n"
    ))
    .starts_with("pools.us: unknown field `<<`"));
}

#[test]
fn byte_order_mark_crlf_and_nulls_are_accepted() {
    assert_eq!(
        ok(&format!("\u{feff}{L}")).listen,
        Some("127.0.0.1:1".parse().unwrap())
    );
    assert_eq!(ok("listen: \"127.0.0.1:1\"\r\nworkers: 1\r\n").workers, 1);
    assert_eq!(ok(&format!("{L}admin_listen: ~\n")).admin_listen, None);
    assert_eq!(
        errors("listen:\n"),
        "listen: required unless reverse is set (e.g. \"127.0.0.1:8080\")"
    );
}
