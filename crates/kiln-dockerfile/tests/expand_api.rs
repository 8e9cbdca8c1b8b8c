//! API-level tests for expansion: lookups, used variables, offsets, the
//! instruction table.

use std::collections::{BTreeMap, HashMap};

use kiln_dockerfile::expand::{
    expand_word, expand_word_with_matches, expand_words, expands, expansion, lookup_fn,
    ExpandErrorKind, Expander, Expansion, Field, Lookup, NoVars, EXPANSION_TABLE,
};

#[test]
fn lookup_impls() {
    let h: HashMap<String, String> = [("a".to_string(), "1".to_string())].into();
    let b: BTreeMap<&str, &str> = [("a", "2")].into();
    let v = vec![("a", "3"), ("a", "4")];
    let arr = [("a".to_string(), "5")];
    let f = lookup_fn(|n: &str| (n == "a").then_some("6"));
    assert_eq!(expand_word("$a", &h, '\\').unwrap(), "1");
    assert_eq!(expand_word("$a", &b, '\\').unwrap(), "2");
    assert_eq!(expand_word("$a", &v, '\\').unwrap(), "4", "last pair wins");
    assert_eq!(expand_word("$a", &arr, '\\').unwrap(), "5");
    assert_eq!(expand_word("$a", &f, '\\').unwrap(), "6");
    assert_eq!(expand_word("[$a]", &NoVars, '\\').unwrap(), "[]");
    assert_eq!(Lookup::get(&&h, "a"), Some("1"));
}

#[test]
fn used_vars() {
    let env = [("set", "x"), ("empty", "")];
    let (w, used) =
        expand_word_with_matches("$set ${empty} ${nope:-$other} '$quoted' \\$esc", &env, '\\')
            .unwrap();
    assert_eq!(w, "x   $quoted $esc");
    assert_eq!(used.matched.iter().collect::<Vec<_>>(), ["empty", "set"]);
    assert_eq!(used.unmatched.iter().collect::<Vec<_>>(), ["nope", "other"]);
    // words of operators are evaluated (and recorded) even when unused
    let (_, used) = expand_word_with_matches("${set:-$unused}", &env, '\\').unwrap();
    assert!(used.unmatched.contains("unused"));
    let e = Expander::new('\\').word_with_matches("$set", &env).unwrap();
    assert_eq!(e.word, "x");
}

#[test]
fn offsets_point_into_the_word() {
    let env = [("a", "1")];
    let cases: &[(&str, usize)] = &[
        ("abc ${", 4),
        ("x ${a:?}${b:?need}", 8),
        ("é${}", 2),
        ("ok \"open", 3),
        ("a 'b", 2),
        ("${a:-${}}", 5),
    ];
    for (w, off) in cases {
        let e = expand_word(w, &env, '\\').unwrap_err();
        assert_eq!(e.offset, *off, "{w}: {e}");
    }
    let e = expand_word("${v:?custom message}", &env, '\\').unwrap_err();
    assert_eq!(
        e.kind,
        ExpandErrorKind::Required {
            name: "v".into(),
            message: "custom message".into()
        }
    );
    assert_eq!(e.to_string(), "v: custom message");
    let e = expand_word("${v:=x}", &env, '\\').unwrap_err();
    assert!(e.to_string().contains("assignment is not supported"), "{e}");
}

#[test]
fn words_api() {
    let env = [("ports", "80 443/udp")];
    assert_eq!(
        expand_words("$ports 8080", &env, '\\').unwrap(),
        ["80", "443/udp", "8080"]
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = "${a:-".repeat(100_000) + &"}".repeat(100_000);
    let e = expand_word(&deep, &NoVars, '\\').unwrap_err();
    assert_eq!(e.kind, ExpandErrorKind::TooDeep);
    let ok = "${a:-".repeat(50) + "x" + &"}".repeat(50);
    assert_eq!(expand_word(&ok, &NoVars, '\\').unwrap(), "x");
}

#[test]
fn arbitrary_input_never_panics() {
    let alphabet = [
        '$', '{', '}', ':', '-', '+', '?', '#', '%', '/', '\\', '`', '\'', '"', 'a', '*', ' ', 'é',
        '\n', '<', '=',
    ];
    let env = [("a", "a*b/é\nx"), ("", "empty-name")];
    // a deterministic pseudo-random walk over short words
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 12) as usize;
        let mut s = String::new();
        let mut x = seed;
        for _ in 0..len {
            s.push(alphabet[(x % alphabet.len() as u64) as usize]);
            x /= alphabet.len() as u64;
            if x == 0 {
                x = seed.rotate_left(17);
            }
        }
        for esc in ['\\', '`'] {
            let _ = expand_word(&s, &env, esc);
            let _ = expand_words(&s, &env, esc);
            if let Err(e) = Expander::heredoc().word(&s, &env) {
                assert!(e.offset <= s.len());
            }
        }
    }
}

#[test]
fn instruction_table() {
    assert!(expands("FROM", Field::Image));
    assert_eq!(
        expansion("from", Field::Flag("--platform")),
        Expansion::GlobalArgs
    );
    assert!(!expands("FROM", Field::StageName));
    for instr in ["ADD", "COPY"] {
        for f in [
            Field::Source,
            Field::Dest,
            Field::Flag("chown"),
            Field::Flag("chmod"),
        ] {
            assert!(expands(instr, f), "{instr} {f:?}");
        }
        assert!(!expands(instr, Field::Flag("exclude")));
        assert_eq!(expansion(instr, Field::HeredocBody), Expansion::Heredoc);
    }
    assert!(expands("ADD", Field::Flag("checksum")));
    assert_eq!(expansion("COPY", Field::Flag("from")), Expansion::Rejected);
    assert!(!expands("COPY", Field::Flag("from")));
    assert!(expands("ENV", Field::Key) && expands("ENV", Field::Value));
    assert!(expands("LABEL", Field::Key) && expands("LABEL", Field::Value));
    assert!(!expands("ARG", Field::Key));
    assert_eq!(expansion("ARG", Field::Value), Expansion::ArgDefault);
    assert_eq!(expansion("EXPOSE", Field::Arg), Expansion::Words);
    for i in ["STOPSIGNAL", "USER", "VOLUME", "WORKDIR"] {
        assert_eq!(expansion(i, Field::Arg), Expansion::Word, "{i}");
    }
    for i in ["RUN", "CMD", "ENTRYPOINT", "HEALTHCHECK", "ONBUILD"] {
        assert!(!expands(i, Field::Command), "{i}");
    }
    assert!(!expands("SHELL", Field::Arg));
    assert!(!expands("MAINTAINER", Field::Arg));
    assert_eq!(
        expansion("RUN", Field::Flag("mount")),
        Expansion::MountValues
    );
    for f in ["network", "security", "device"] {
        assert!(!expands("RUN", Field::Flag(f)));
    }
    assert!(!expands("NOPE", Field::Arg));
    // every row names its source and rows are unique
    for (i, r) in EXPANSION_TABLE.iter().enumerate() {
        assert!(!r.source.is_empty());
        assert!(EXPANSION_TABLE[..i]
            .iter()
            .all(|o| (o.instruction, o.field) != (r.instruction, r.field)));
    }
}
