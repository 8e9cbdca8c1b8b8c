//! `--chmod` values: octal (`755`, `04755`) and symbolic (`u+x,g-w,o=r`) as BuildKit
//! accepts them (chmod(1) grammar with a zero umask, so a clause without `ugoa` means `a`).
//! BuildKit applies the result to every file *and directory* it copies.

use crate::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    /// Replace the permission bits (including setuid/setgid/sticky).
    Octal(u32),
    /// Edit the source's bits clause by clause.
    Symbolic(Vec<Clause>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// Mask of the classes named (`u` = 0o4700, `g` = 0o2070, `o` = 0o1007).
    who: u32,
    actions: Vec<(Op, Perm)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Remove,
    Set,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Perm {
    /// Literal letters: r/w/x as 0o444/0o222/0o111, s = 0o6000, t = 0o1000.
    Bits { bits: u32, cond_x: bool },
    /// Copy another class's current bits (`g=u`).
    Copy(u32),
}

const WHO_U: u32 = 0o4700;
const WHO_G: u32 = 0o2070;
const WHO_O: u32 = 0o1007;
const WHO_A: u32 = 0o7777;

impl Chmod {
    /// Parse a `--chmod` value. Numeric-looking values must be valid octal ≤ 07777.
    pub fn parse(value: &str) -> Result<Chmod, Error> {
        let bad = |reason| Error::BadChmod {
            value: value.to_owned(),
            reason,
        };
        if value.is_empty() {
            return Err(bad("empty"));
        }
        if value.bytes().all(|b| b.is_ascii_digit()) {
            let m = u32::from_str_radix(value, 8)
                .map_err(|_| bad("it should be octal string and between 0 and 07777"))?;
            if m > 0o7777 {
                return Err(bad("it should be octal string and between 0 and 07777"));
            }
            return Ok(Chmod::Octal(m));
        }
        let mut clauses = Vec::new();
        for part in value.split(',') {
            let b = part.as_bytes();
            let mut i = 0;
            let mut who = 0;
            while i < b.len() && matches!(b[i], b'u' | b'g' | b'o' | b'a') {
                who |= match b[i] {
                    b'u' => WHO_U,
                    b'g' => WHO_G,
                    b'o' => WHO_O,
                    _ => WHO_A,
                };
                i += 1;
            }
            if who == 0 {
                who = WHO_A;
            }
            let mut actions = Vec::new();
            while i < b.len() {
                let op = match b[i] {
                    b'+' => Op::Add,
                    b'-' => Op::Remove,
                    b'=' => Op::Set,
                    _ => return Err(bad("expected one of + - = after [ugoa]")),
                };
                i += 1;
                let perm = match b.get(i) {
                    Some(c @ (b'u' | b'g' | b'o')) => {
                        i += 1;
                        Perm::Copy(match c {
                            b'u' => 6,
                            b'g' => 3,
                            _ => 0,
                        })
                    }
                    _ => {
                        let (mut bits, mut cond_x) = (0, false);
                        while i < b.len() && !matches!(b[i], b'+' | b'-' | b'=') {
                            bits |= match b[i] {
                                b'r' => 0o444,
                                b'w' => 0o222,
                                b'x' => 0o111,
                                b'X' => {
                                    cond_x = true;
                                    0
                                }
                                b's' => 0o6000,
                                b't' => 0o1000,
                                _ => return Err(bad("unknown permission letter")),
                            };
                            i += 1;
                        }
                        Perm::Bits { bits, cond_x }
                    }
                };
                actions.push((op, perm));
            }
            if actions.is_empty() {
                return Err(bad("missing operator"));
            }
            clauses.push(Clause { who, actions });
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The mode a copied node gets, from the source's permission bits.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let mut mode = mode & 0o7777;
        match self {
            Chmod::Octal(m) => *m,
            Chmod::Symbolic(clauses) => {
                for c in clauses {
                    for &(op, perm) in &c.actions {
                        let bits = match perm {
                            Perm::Bits { bits, cond_x } => {
                                let x = cond_x && (is_dir || mode & 0o111 != 0);
                                bits | if x { 0o111 } else { 0 }
                            }
                            Perm::Copy(shift) => ((mode >> shift) & 7) * 0o111,
                        } & c.who;
                        mode = match op {
                            Op::Add => mode | bits,
                            Op::Remove => mode & !bits,
                            Op::Set => (mode & !c.who) | bits,
                        };
                    }
                }
                mode
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, u32, bool, u32)] = &[
            ("755", 0o600, false, 0o755),
            ("0644", 0o777, true, 0o644),
            ("4755", 0o600, false, 0o4755),
            ("u+x", 0o644, false, 0o744),
            ("g-w", 0o664, false, 0o644),
            ("o=r", 0o667, false, 0o664),
            ("u+x,g-w,o=r", 0o666, false, 0o744),
            ("+x", 0o644, false, 0o755),
            ("a-w", 0o666, false, 0o444),
            ("go=", 0o777, false, 0o700),
            ("a+X", 0o644, false, 0o644),
            ("a+X", 0o644, true, 0o755),
            ("a+X", 0o744, false, 0o755),
            ("g=u", 0o640, false, 0o660),
            ("u+s", 0o755, false, 0o4755),
            ("+t", 0o755, true, 0o1755),
            ("u=rwx,go=rx", 0o000, false, 0o755),
        ];
        for &(s, from, dir, want) in cases {
            let c = Chmod::parse(s).unwrap();
            assert_eq!(c.apply(from, dir), want, "{s} on {from:o}");
        }
    }

    #[test]
    fn rejects() {
        for s in ["", "8", "77777", "u*x", "q+x", "u"] {
            assert!(Chmod::parse(s).is_err(), "{s}");
        }
    }
}
