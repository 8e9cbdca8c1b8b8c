//! Remote ADD sources: HTTP(S) downloads and git checkouts, fetched into private temp
//! directories that COPY then reads like any other source root.
//!
//! Both are hostile input. A download is streamed to disk, hashed as it goes and cut off
//! at a named limit (`--max-download-size`); its file name comes only from the last
//! segment of the URL path (BuildKit's rule: `Content-Disposition` is ignored, checked
//! against BuildKit 0.8), and it is copied into the image through `kiln-fs` like a context
//! file. A git checkout is made by the `git` binary in a fresh temp directory (no
//! templates, so no hooks; the `ext::` transport refused; never a prompt), and its tree is
//! read only through a `SafeRoot`, so a symlink in the repository cannot point COPY
//! outside it.

use crate::error::OpError;
use kiln_oci::Digest;
use sha2::{Digest as _, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Default of `--max-download-size`: large enough for toolchain tarballs, small enough
/// that a hostile server cannot fill the disk.
pub const DEFAULT_MAX_DOWNLOAD_SIZE: u64 = 4 << 30;

/// The name BuildKit's Dockerfile frontend gives a download whose URL path has no last
/// segment (`ADD http://host/ /dest/`).
const UNNAMED: &str = "__unnamed__";

/// A downloaded file: `dir/name`, mode 0600, mtime from `Last-Modified` (else 0).
pub(crate) struct Download {
    pub dir: tempfile::TempDir,
    pub name: String,
    pub digest: Digest,
    /// The server's ETag for these bytes, if it sent one.
    pub etag: Option<String>,
}

/// `--checksum=sha256:<hex>` of an `ADD <url>`.
pub(crate) fn parse_checksum(url: &str, value: &str) -> Result<Digest, OpError> {
    let bad = |reason: String| OpError::Remote {
        url: url.to_owned(),
        message: format!("invalid --checksum {value:?}: {reason}"),
    };
    if !value.starts_with("sha256:") {
        return Err(bad("expected sha256:<64 hex digits>".into()));
    }
    Digest::parse(value).map_err(|e| bad(e.to_string()))
}

/// The file name of a download: the decoded last segment of the URL path, or
/// `__unnamed__` (never `.`/`..`, never containing `/`).
pub(crate) fn url_file_name(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let path = after_scheme
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .split_once('/')
        .map_or("", |(_, p)| p);
    let decoded = percent_decode(path);
    let base = decoded.rsplit('/').next().unwrap_or("");
    match base {
        "" | "." | ".." => UNNAMED.to_owned(),
        b if b.contains('\0') => UNNAMED.to_owned(),
        // COPY reads the name as a pattern: `*` and `?` still match the name itself (the
        // only file in its directory), but `[` and `\` would not, so they become `_`.
        b => b.replace(['[', '\\'], "_"),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if let (b'%', Some(Some(h)), Some(Some(l))) = (
            b[i],
            b.get(i + 1).map(|c| hex(*c)),
            b.get(i + 2).map(|c| hex(*c)),
        ) {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Downloads `url` into a fresh temp directory, hashing while streaming. More than
/// `limit` bytes is an error naming the limit and its flag; nothing is kept.
pub(crate) fn download(
    url: &str,
    limit: u64,
    cancelled: &dyn Fn() -> bool,
) -> Result<Download, OpError> {
    match fetch(url, limit, None, cancelled)? {
        Fetch::Downloaded(d) => Ok(d),
        Fetch::NotModified => Err(OpError::Remote {
            url: url.to_owned(),
            message: "server answered 304 Not Modified to an unconditional request".into(),
        }),
    }
}

/// What a (possibly conditional) GET gave.
pub(crate) enum Fetch {
    Downloaded(Download),
    /// 304: the `If-None-Match` ETag still names the content.
    NotModified,
}

/// GET `url`; with `if_none_match`, a 304 answer is [`Fetch::NotModified`].
pub(crate) fn fetch(
    url: &str,
    limit: u64,
    if_none_match: Option<&str>,
    cancelled: &dyn Fn() -> bool,
) -> Result<Fetch, OpError> {
    let fail = |message: String| OpError::Remote {
        url: url.to_owned(),
        message,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        // No body timeout: ureq's is a total budget, and a large download on a slow link
        // is legitimate; the size limit bounds what a server can send.
        .http_status_as_error(false)
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut req = agent.get(url);
    if let Some(etag) = if_none_match {
        req = req.header("If-None-Match", etag);
    }
    let resp = req
        .call()
        .map_err(|e| fail(format!("request failed: {e}")))?;
    let status = resp.status();
    if status.as_u16() == 304 && if_none_match.is_some() {
        return Ok(Fetch::NotModified);
    }
    if !status.is_success() {
        return Err(fail(format!("server answered {status}")));
    }
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let etag = header("etag");
    if let Some(len) = header("content-length").and_then(|v| v.trim().parse::<u64>().ok()) {
        if len > limit {
            return Err(too_large(url, limit));
        }
    }
    let mtime = header("last-modified")
        .and_then(|v| parse_http_date(&v))
        .unwrap_or(0);
    let name = url_file_name(url);
    let dir = tempfile::Builder::new()
        .prefix("kiln-add-url-")
        .tempdir()
        .map_err(|e| fail(format!("cannot create a temp dir: {e}")))?;
    let path = dir.path().join(&name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode_0600()
        .open(&path)
        .map_err(|e| fail(format!("cannot create {}: {e}", path.display())))?;
    let mut body = resp.into_body().into_with_config().limit(u64::MAX).reader();
    let mut hasher = Sha256::new();
    let mut total: u64 = 0;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        if cancelled() {
            return Err(OpError::Cancelled);
        }
        let n = body
            .read(&mut buf)
            .map_err(|e| fail(format!("reading the body: {e}")))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > limit {
            return Err(too_large(url, limit));
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| fail(format!("writing {}: {e}", path.display())))?;
    }
    file.sync_all()
        .map_err(|e| fail(format!("writing {}: {e}", path.display())))?;
    drop(file);
    let t = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        },
    };
    rustix::fs::utimensat(rustix::fs::CWD, &path, &t, rustix::fs::AtFlags::empty())
        .map_err(|e| fail(format!("setting the mtime of {}: {e}", path.display())))?;
    Ok(Fetch::Downloaded(Download {
        dir,
        name,
        digest: Digest::from_sha256(hasher.finalize().into()),
        etag,
    }))
}

/// What kiln remembers of a URL's last download: the server's ETag for that content and
/// its digest, so the next build can ask `If-None-Match` instead of downloading again
/// (BuildKit's re-check). Kept in `kiln/cache/http/<sha256 of the URL>.json`; losing it
/// only costs a download.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct HttpMemo {
    pub url: String,
    pub etag: String,
    pub digest: Digest,
}

fn memo_path(store_root: &Path, url: &str) -> PathBuf {
    let key = Digest::of_bytes(url.as_bytes());
    store_root
        .join("kiln/cache/http")
        .join(format!("{}.json", key.hex()))
}

impl HttpMemo {
    pub fn load(store_root: &Path, url: &str) -> Option<HttpMemo> {
        let bytes = std::fs::read(memo_path(store_root, url)).ok()?;
        let m: HttpMemo = serde_json::from_slice(&bytes).ok()?;
        (m.url == url).then_some(m)
    }

    /// Best effort: a memo that cannot be written only means a download next time.
    pub fn save(&self, store_root: &Path) {
        let path = memo_path(store_root, &self.url);
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Ok(bytes) = serde_json::to_vec(self) {
            let _ = kiln_fs::atomic::write_file(&path, &bytes);
        }
    }

    pub fn forget(store_root: &Path, url: &str) {
        let _ = std::fs::remove_file(memo_path(store_root, url));
    }
}

fn too_large(url: &str, limit: u64) -> OpError {
    OpError::Remote {
        url: url.to_owned(),
        message: format!(
            "larger than the download limit of {limit} bytes (raise it with --max-download-size)"
        ),
    }
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    /// BuildKit's HTTP source writes downloads 0600; `--chmod` may change that later.
    fn mode_0600(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

/// Seconds since the epoch of an HTTP date: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37
/// GMT`), RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) or asctime (`Sun Nov  6 08:49:37
/// 1994`), the three forms RFC 9110 requires a recipient to accept.
pub(crate) fn parse_http_date(s: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = |m: &str| MONTHS.iter().position(|x| *x == m).map(|i| i as u32 + 1);
    let words: Vec<&str> = s.split_whitespace().collect();
    let (day, mon, year, time) = match words.as_slice() {
        // IMF-fixdate
        [_, d, m, y, t, "GMT"] => (d.parse().ok()?, month(m)?, y.parse::<i64>().ok()?, *t),
        // RFC 850: two-digit year, taken as 19xx/20xx like Go's net/http.
        [_, dmy, t, "GMT"] => {
            let mut p = dmy.split('-');
            let d = p.next()?.parse().ok()?;
            let m = month(p.next()?)?;
            let y: i64 = p.next()?.parse().ok()?;
            let y = if y < 70 { 2000 + y } else { 1900 + y };
            (d, m, y, *t)
        }
        // asctime
        [_, m, d, t, y] => (d.parse().ok()?, month(m)?, y.parse::<i64>().ok()?, *t),
        _ => return None,
    };
    let mut hms = time.split(':').map(|x| x.parse::<i64>().ok());
    let (h, mi, se) = (hms.next()??, hms.next()??, hms.next()??);
    if !(1..=31).contains(&day) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(year, mon, day) * 86400 + h * 3600 + mi * 60 + se)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// `#ref:subdir` of a git source: the ref (`HEAD` when empty) and the subdirectory.
pub(crate) fn parse_git_fragment(fragment: Option<&str>) -> (String, Option<String>) {
    let f = fragment.unwrap_or("");
    let (r, sub) = match f.split_once(':') {
        Some((r, s)) => (r, Some(s)),
        None => (f, None),
    };
    let r = if r.is_empty() { "HEAD" } else { r };
    let sub = sub
        .map(|s| s.trim_matches('/'))
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    (r.to_owned(), sub)
}

fn is_commit_id(r: &str) -> bool {
    (r.len() == 40 || r.len() == 64) && r.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `git` with settings that make fetching hostile repositories safe and non-interactive.
fn git() -> Command {
    let mut c = Command::new("git");
    c.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .args(["-c", "protocol.ext.allow=never"])
        .args(["-c", "core.hooksPath=/dev/null"])
        .args(["-c", "advice.detachedHead=false"])
        .stdin(std::process::Stdio::null());
    c
}

fn run_git(url: &str, verb: &str, cmd: &mut Command) -> Result<String, OpError> {
    let out = cmd.output().map_err(|e| OpError::Git {
        url: url.to_owned(),
        message: format!("cannot run git (is it installed? scripts/setup.sh installs it): {e}"),
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_owned();
        return Err(OpError::Git {
            url: url.to_owned(),
            message: format!("git {verb} failed: {last}"),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The commit `reference` names in the repository at `url` (`git ls-remote`). A full
/// commit id is taken as it is. An annotated tag resolves to the commit it points to.
pub(crate) fn resolve_git_ref(url: &str, reference: &str) -> Result<String, OpError> {
    if is_commit_id(reference) {
        return Ok(reference.to_ascii_lowercase());
    }
    // A ref is passed to git as an argument: one that looks like an option, or holds
    // characters no ref name may hold, is refused before git sees it.
    if reference.starts_with('-')
        || reference
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "~^?*[\\".contains(c))
    {
        return Err(OpError::Git {
            url: url.to_owned(),
            message: format!("invalid ref {reference:?}"),
        });
    }
    // The peeled pattern too: over dumb HTTP `ls-remote URL v1` omits `refs/tags/v1^{}`,
    // and an annotated tag must resolve to its commit, not to the tag object.
    let peeled = format!("{reference}^{{}}");
    let out = run_git(
        url,
        "ls-remote",
        git().args(["ls-remote", "--", url, reference, &peeled]),
    )?;
    let refs: Vec<(&str, &str)> = out
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(sha, name)| (sha.trim(), name.trim()))
        .collect();
    let want = [
        format!("refs/tags/{reference}^{{}}"),
        format!("refs/tags/{reference}"),
        format!("refs/heads/{reference}"),
        format!("{reference}^{{}}"),
        reference.to_owned(),
    ];
    for w in &want {
        if let Some((sha, _)) = refs.iter().find(|(_, n)| n == w) {
            return Ok(sha.to_string());
        }
    }
    Err(OpError::Git {
        url: url.to_owned(),
        message: format!("no branch, tag or ref named {reference:?}"),
    })
}

/// A checkout of one commit: `dir/repo` is the work tree; `commit_time` its committer date.
pub(crate) struct Checkout {
    pub dir: tempfile::TempDir,
    pub commit_time: i64,
}

impl Checkout {
    pub fn tree(&self) -> PathBuf {
        self.dir.path().join("repo")
    }
}

/// Fetches `commit` (named `reference` on the remote) from `url` and checks it out. The
/// `.git` directory is removed unless `keep_git_dir`.
pub(crate) fn checkout(
    url: &str,
    reference: &str,
    commit: &str,
    keep_git_dir: bool,
) -> Result<Checkout, OpError> {
    let dir = tempfile::Builder::new()
        .prefix("kiln-add-git-")
        .tempdir()
        .map_err(|e| OpError::Git {
            url: url.to_owned(),
            message: format!("cannot create a temp dir: {e}"),
        })?;
    let repo = dir.path().join("repo");
    // An empty template directory: no sample hooks, no template config.
    let template = dir.path().join("template");
    std::fs::create_dir(&template).map_err(OpError::io("create", &template))?;
    run_git(
        url,
        "init",
        git()
            .arg("init")
            .arg("-q")
            .arg(format!("--template={}", template.display()))
            .arg(&repo),
    )?;
    let in_repo = || {
        let mut c = git();
        c.arg("-C").arg(&repo);
        c
    };
    run_git(
        url,
        "remote add",
        in_repo().args(["remote", "add", "--", "origin", url]),
    )?;
    // What to ask the remote for: a named ref when there is one (every server serves
    // those), else the commit id (smart servers allow it for reachable commits).
    let wanted = if is_commit_id(reference) {
        commit.to_owned()
    } else {
        reference.to_owned()
    };
    let shallow = run_git(
        url,
        "fetch",
        in_repo().args([
            "fetch",
            "-q",
            "--no-tags",
            "--depth=1",
            "--",
            "origin",
            &wanted,
        ]),
    );
    if shallow.is_err() {
        // The dumb HTTP transport cannot do shallow fetches; fetch everything instead.
        run_git(
            url,
            "fetch",
            in_repo().args([
                "fetch",
                "-q",
                "--no-tags",
                "--",
                "origin",
                "+refs/heads/*:refs/remotes/origin/*",
                "+refs/tags/*:refs/tags/*",
            ]),
        )?;
    }
    run_git(
        url,
        "checkout",
        in_repo().args(["checkout", "-q", "--detach", commit, "--"]),
    )?;
    let head = run_git(url, "rev-parse", in_repo().args(["rev-parse", "HEAD"]))?;
    if head.trim() != commit {
        return Err(OpError::Git {
            url: url.to_owned(),
            message: format!("checked out {} instead of {commit}", head.trim()),
        });
    }
    let time = run_git(
        url,
        "show",
        in_repo().args(["show", "-s", "--format=%ct", "HEAD"]),
    )?;
    let commit_time = time.trim().parse().map_err(|_| OpError::Git {
        url: url.to_owned(),
        message: format!("unreadable commit time {:?}", time.trim()),
    })?;
    if !keep_git_dir {
        let git_dir = repo.join(".git");
        std::fs::remove_dir_all(&git_dir).map_err(OpError::io("remove", &git_dir))?;
    }
    Ok(Checkout { dir, commit_time })
}

/// The source path of a git subdirectory inside the checkout (`/` for the whole tree).
pub(crate) fn subdir_source(subdir: Option<&str>) -> String {
    match subdir {
        Some(s) => format!("/{s}"),
        None => "/".to_owned(),
    }
}

/// Total size of a checked-out tree, for `--max-download-size` (git writes it before kiln
/// can count, so this bounds what reaches a layer, not the temp disk use).
pub(crate) fn tree_size(root: &Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                todo.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_from_url_paths() {
        let cases = [
            ("http://h/a/b.txt", "b.txt"),
            ("http://h/a/b.txt?x=1#f", "b.txt"),
            ("http://h/", UNNAMED),
            ("http://h", UNNAMED),
            ("http://h/a/", UNNAMED),
            ("http://h/a%20b", "a b"),
            ("http://h/x/..", UNNAMED),
            ("http://h/a%2Fb", "b"),
            ("http://h/a[1].txt", "a_1].txt"),
            ("http://h/a*.txt", "a*.txt"),
            ("https://h:8080/dl/tool.tar.gz", "tool.tar.gz"),
        ];
        for (url, want) in cases {
            assert_eq!(url_file_name(url), want, "{url}");
        }
    }

    #[test]
    fn http_dates() {
        let t = 784111777; // 1994-11-06 08:49:37 UTC
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), Some(t));
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), Some(t));
        assert_eq!(
            parse_http_date("Thu, 02 Jan 2020 03:04:05 GMT"),
            Some(1577934245)
        );
        assert_eq!(parse_http_date("yesterday"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 25:49:37 GMT"), None);
    }

    #[test]
    fn checksums() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert!(parse_checksum("u", &good).is_ok());
        for bad in [
            "",
            "md5:abc",
            "sha256:xyz",
            &format!("sha512:{}", "a".repeat(128)),
        ] {
            let e = parse_checksum("http://x/y", bad).unwrap_err().to_string();
            assert!(e.contains("http://x/y") && e.contains("--checksum"), "{e}");
        }
    }

    #[test]
    fn git_fragments() {
        assert_eq!(parse_git_fragment(None), ("HEAD".into(), None));
        assert_eq!(parse_git_fragment(Some("v1")), ("v1".into(), None));
        assert_eq!(
            parse_git_fragment(Some("main:sub/dir/")),
            ("main".into(), Some("sub/dir".into()))
        );
        assert_eq!(
            parse_git_fragment(Some(":docs")),
            ("HEAD".into(), Some("docs".into()))
        );
    }
}
