//! Shared test helpers: a tree hasher for victim directories, tar crafting, and layout.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use kiln_oci::Digest;

/// A digest over every node below `dir`: relative path, type, mode, uid/gid, size,
/// symlink target, content and mtime. Any change to the victim changes it.
pub fn hash_tree(dir: &Path) -> Digest {
    let mut lines = BTreeMap::new();
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<Vec<u8>, Vec<u8>>) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p
                .strip_prefix(base)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            let mut line = format!(
                "{:o} {} {} {} {} ",
                m.mode(),
                m.uid(),
                m.gid(),
                m.size(),
                m.mtime()
            )
            .into_bytes();
            if m.file_type().is_symlink() {
                line.extend_from_slice(std::fs::read_link(&p).unwrap().as_os_str().as_bytes());
            } else if m.is_file() {
                line.extend_from_slice(
                    Digest::of_bytes(&std::fs::read(&p).unwrap())
                        .hex()
                        .as_bytes(),
                );
            }
            out.insert(rel, line);
            if m.is_dir() {
                walk(base, &p, out);
            }
        }
    }
    walk(dir, dir, &mut lines);
    let mut all = Vec::new();
    for (k, v) in lines {
        all.extend_from_slice(&k);
        all.push(0);
        all.extend_from_slice(&v);
        all.push(b'\n');
    }
    Digest::of_bytes(&all)
}

/// A scratch area with `root/` (the target) and `victim/` (must never change).
pub struct Scene {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub victim: PathBuf,
    pub before: Digest,
}

impl Scene {
    pub fn new() -> Scene {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let victim = tmp.path().join("victim");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&victim).unwrap();
        std::fs::write(victim.join("file"), b"precious").unwrap();
        std::fs::create_dir(victim.join("sub")).unwrap();
        std::fs::write(victim.join("sub/inner"), b"also precious").unwrap();
        let before = hash_tree(&victim);
        Scene {
            tmp,
            root,
            victim,
            before,
        }
    }

    pub fn safe_root(&self) -> kiln_fs::SafeRoot {
        kiln_fs::SafeRoot::open(&self.root).unwrap()
    }

    pub fn assert_victim_unchanged(&self) {
        assert_eq!(
            hash_tree(&self.victim),
            self.before,
            "victim directory was modified"
        );
    }

    /// Relative path from `root/<depth dirs>` to the victim, e.g. `../../victim`.
    pub fn victim_abs(&self) -> String {
        self.victim.to_str().unwrap().to_string()
    }
}

/// Raw tar crafting with the `tar` crate's header API, so hostile names can be written
/// exactly (bypassing any sanitising builder).
pub struct Craft {
    pub buf: Vec<u8>,
}

impl Craft {
    pub fn new() -> Craft {
        Craft { buf: Vec::new() }
    }

    fn header(name: &[u8], ty: tar::EntryType, size: u64, link: Option<&[u8]>) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            assert!(name.len() <= 100, "use long_name");
            old.name[..name.len()].copy_from_slice(name);
            if let Some(l) = link {
                old.linkname[..l.len()].copy_from_slice(l);
            }
        }
        h.set_entry_type(ty);
        h.set_size(size);
        h.set_mode(if ty == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_mtime(1_000_000);
        h.set_cksum();
        h
    }

    pub fn raw(&mut self, h: &tar::Header, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(h.as_bytes());
        self.buf.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        let h = Self::header(
            name.as_bytes(),
            tar::EntryType::Regular,
            data.len() as u64,
            None,
        );
        self.raw(&h, data)
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        let h = Self::header(name.as_bytes(), tar::EntryType::Directory, 0, None);
        self.raw(&h, &[])
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        let h = Self::header(
            name.as_bytes(),
            tar::EntryType::Symlink,
            0,
            Some(target.as_bytes()),
        );
        self.raw(&h, &[])
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        let h = Self::header(
            name.as_bytes(),
            tar::EntryType::Link,
            0,
            Some(target.as_bytes()),
        );
        self.raw(&h, &[])
    }

    pub fn device(&mut self, name: &str, ty: tar::EntryType, major: u32, minor: u32) -> &mut Self {
        let mut h = Self::header(name.as_bytes(), ty, 0, None);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.set_cksum();
        self.raw(&h, &[])
    }

    /// A GNU long-name ('L') entry followed by a regular file.
    pub fn long_file(&mut self, name: &[u8], data: &[u8]) -> &mut Self {
        let mut n = name.to_vec();
        n.push(0);
        let h = Self::header(
            b"././@LongLink",
            tar::EntryType::GNULongName,
            n.len() as u64,
            None,
        );
        self.raw(&h, &n);
        let h = Self::header(
            &name[..100.min(name.len())],
            tar::EntryType::Regular,
            data.len() as u64,
            None,
        );
        self.raw(&h, data)
    }

    pub fn end(&mut self) -> Vec<u8> {
        let mut out = self.buf.clone();
        out.extend_from_slice(&[0u8; 1024]);
        out
    }
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

pub fn name(s: &str) -> &OsStr {
    OsStr::new(s)
}
