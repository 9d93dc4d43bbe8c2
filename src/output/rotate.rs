//! `--output-file` with pwru 1.0.12's lumberjack rotation: size-capped files renamed to
//! `name-2006-01-02T15-04-05.000.ext` (local time), pruned by count and age, optionally gzipped.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flate2::write::GzEncoder;
use flate2::Compression;

use super::text::WallClock;
use crate::settings::OutputFile;

/// One megabyte as lumberjack counts it.
const MEGABYTE: u64 = 1024 * 1024;

/// Length of a backup timestamp, e.g. `2006-01-02T15-04-05.000`.
const STAMP_LEN: usize = 23;

/// When to rotate and which rotated files to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// Bytes per file before rotating.
    pub max_size: u64,
    /// Rotated files to keep (0 = all).
    pub max_backups: usize,
    /// Days to keep rotated files (0 = forever).
    pub max_age_days: u64,
    /// gzip rotated files.
    pub compress: bool,
}

impl Default for RotationPolicy {
    /// pwru's defaults: 100 MB, keep everything, no compression.
    fn default() -> Self {
        Self {
            max_size: 100 * MEGABYTE,
            max_backups: 0,
            max_age_days: 0,
            compress: false,
        }
    }
}

impl RotationPolicy {
    /// The `--output-file-*` settings (a max size of 0 means the 100 MB default, as in
    /// lumberjack).
    pub fn from_settings(file: &OutputFile) -> Self {
        let max_size = match file.max_size_mb {
            0 => Self::default().max_size,
            mb => mb.saturating_mul(MEGABYTE),
        };
        Self {
            max_size,
            max_backups: usize::try_from(file.max_backups).unwrap_or(usize::MAX),
            max_age_days: file.max_age_days,
            compress: file.compress,
        }
    }
}

/// An append-only file that rotates when the next write would pass `max_size`. Writes are
/// split only after a `'\n'`, so a caller that writes whole lines never sees a line split
/// across files (a single line longer than `max_size` gets a file of its own). Pruning and
/// compression of old files run in a background thread, one at a time.
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    policy: RotationPolicy,
    clock: WallClock,
    /// Time of the newest backup name handed out: later names are always newer.
    last_backup: Option<SystemTime>,
    mill: Option<JoinHandle<()>>,
}

impl RotatingFile {
    /// Opens `path` for append (created if missing); rotates it first if it is already full.
    pub fn open(path: &Path, policy: RotationPolicy) -> io::Result<Self> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        let mut this = Self {
            path: path.to_path_buf(),
            file,
            size,
            policy,
            clock: WallClock::default(),
            last_backup: None,
            mill: None,
        };
        if this.size >= this.policy.max_size {
            this.rotate()?;
        }
        Ok(this)
    }

    /// Bytes in the current file.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Waits for the background pruning/compression of earlier rotations.
    pub fn wait_for_mill(&mut self) {
        if let Some(handle) = self.mill.take() {
            let _ = handle.join();
        }
    }

    /// Renames the current file to its backup name, opens a fresh one and starts the mill.
    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let backup = self.free_backup_name();
        fs::rename(&self.path, &backup).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "rotating {} to {}: {e}",
                    self.path.display(),
                    backup.display()
                ),
            )
        })?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        self.wait_for_mill();
        let (path, policy) = (self.path.clone(), self.policy);
        if policy.max_backups != 0 || policy.max_age_days != 0 || policy.compress {
            self.mill = std::thread::Builder::new()
                .name("pwru-log-mill".into())
                .spawn(move || {
                    for warning in mill(&path, policy, SystemTime::now()) {
                        eprintln!("pwru: warning: {warning}");
                    }
                })
                .ok();
        }
        Ok(())
    }

    /// `backup_name` for now (at least a millisecond after the previous backup), moved on by
    /// a millisecond while that name (or its `.gz`) exists, so that two rotations within one
    /// millisecond never overwrite each other and names sort in rotation order.
    fn free_backup_name(&mut self) -> PathBuf {
        let now = SystemTime::now();
        let mut at = match self.last_backup {
            Some(last) if last + Duration::from_millis(1) > now => last + Duration::from_millis(1),
            _ => now,
        };
        loop {
            let name = backup_name(&self.path, &local_stamp(&mut self.clock, at));
            if !name.exists() && !gz_name(&name).exists() {
                self.last_backup = Some(at);
                return name;
            }
            at += Duration::from_millis(1);
        }
    }

    fn write_to_file(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            let room = self.policy.max_size.saturating_sub(self.size);
            if rest.len() as u64 <= room {
                self.write_to_file(rest)?;
                break;
            }
            // The longest run of whole lines that still fits, else a whole line on its own.
            let fits = &rest[..room as usize];
            let cut = match fits.iter().rposition(|b| *b == b'\n') {
                Some(nl) => nl + 1,
                None if self.size > 0 => 0,
                None => rest
                    .iter()
                    .position(|b| *b == b'\n')
                    .map_or(rest.len(), |nl| nl + 1),
            };
            self.write_to_file(&rest[..cut])?;
            rest = &rest[cut..];
            if !rest.is_empty() {
                self.rotate()?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for RotatingFile {
    fn drop(&mut self) {
        self.wait_for_mill();
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("opening --output-file {}: {e}", path.display()),
            )
        })
}

/// `2006-01-02T15-04-05.000` for `at` in local time.
fn local_stamp(clock: &mut WallClock, at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut stamp = String::with_capacity(STAMP_LEN);
    clock.push_at(&mut stamp, since.as_secs() as i64, since.subsec_millis());
    stamp.replace(':', "-")
}

/// The name's stem (everything before the extension) and its extension with the dot, as
/// Go's `filepath.Ext` splits them (`pwru.log` -> `pwru`, `.log`; `pwru` -> `pwru`, ``).
fn split_ext(file_name: &str) -> (&str, &str) {
    match file_name.rfind('.') {
        Some(dot) => file_name.split_at(dot),
        None => (file_name, ""),
    }
}

/// `dir/name-<stamp>.ext` for `dir/name.ext` (lumberjack's `backupName`).
pub fn backup_name(path: &Path, stamp: &str) -> PathBuf {
    let file_name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let (stem, ext) = split_ext(&file_name);
    path.with_file_name(format!("{stem}-{stamp}{ext}"))
}

fn gz_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".gz");
    PathBuf::from(name)
}

/// A rotated file of `path` found in its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Backup {
    path: PathBuf,
    stamp: String,
    compressed: bool,
}

/// Whether `s` has the shape `2006-01-02T15-04-05.000`.
fn is_stamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == STAMP_LEN
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 | 13 | 16 => *c == b'-',
            10 => *c == b'T',
            19 => *c == b'.',
            _ => c.is_ascii_digit(),
        })
}

/// The rotated files of `path`, newest first.
fn list_backups(path: &Path) -> io::Result<Vec<Backup>> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let (stem, ext) = split_ext(&file_name);
    let prefix = format!("{stem}-");
    let mut backups = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let (body, compressed) = match name.strip_suffix(".gz") {
            Some(body) => (body, true),
            None => (name.as_str(), false),
        };
        let stamp = body
            .strip_prefix(&prefix)
            .and_then(|s| s.strip_suffix(ext))
            .filter(|s| is_stamp(s));
        if let Some(stamp) = stamp {
            backups.push(Backup {
                path: entry.path(),
                stamp: stamp.to_string(),
                compressed,
            });
        }
    }
    backups.sort_by(|a, b| b.stamp.cmp(&a.stamp));
    Ok(backups)
}

/// lumberjack's `millRunOnce`: drop backups beyond `max_backups` (counting a file and its
/// `.gz` once) and older than `max_age_days`, then gzip the rest. Returns what failed.
fn mill(path: &Path, policy: RotationPolicy, now: SystemTime) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut backups = match list_backups(path) {
        Ok(b) => b,
        Err(e) => return vec![format!("listing rotated files of {}: {e}", path.display())],
    };
    let mut remove = Vec::new();
    if policy.max_backups > 0 {
        let mut kept_stamps: Vec<String> = Vec::new();
        backups.retain(|b| {
            if kept_stamps.contains(&b.stamp) {
                return true;
            }
            if kept_stamps.len() < policy.max_backups {
                kept_stamps.push(b.stamp.clone());
                true
            } else {
                remove.push(b.path.clone());
                false
            }
        });
    }
    if policy.max_age_days > 0 {
        let age = Duration::from_secs(policy.max_age_days.saturating_mul(86_400));
        let cutoff = local_stamp(
            &mut WallClock::default(),
            now.checked_sub(age).unwrap_or(UNIX_EPOCH),
        );
        backups.retain(|b| {
            let keep = b.stamp >= cutoff;
            if !keep {
                remove.push(b.path.clone());
            }
            keep
        });
    }
    for path in remove {
        if let Err(e) = fs::remove_file(&path) {
            warnings.push(format!("removing old {}: {e}", path.display()));
        }
    }
    if policy.compress {
        for backup in backups.iter().filter(|b| !b.compressed) {
            if let Err(e) = compress(&backup.path) {
                warnings.push(format!("compressing {}: {e}", backup.path.display()));
            }
        }
    }
    warnings
}

/// gzips `src` to `src.gz` and removes `src` (the partial `.gz` is removed on failure).
fn compress(src: &Path) -> io::Result<()> {
    let dst = gz_name(src);
    let result = (|| {
        let mut input = File::open(src)?;
        let output = File::create(&dst)?;
        let mut encoder = GzEncoder::new(io::BufWriter::new(output), Compression::default());
        io::copy(&mut input, &mut encoder)?;
        encoder
            .finish()?
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()
    })();
    match result {
        Ok(()) => fs::remove_file(src),
        Err(e) => {
            let _ = fs::remove_file(&dst);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;

    /// A fresh empty directory under the system temp dir.
    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "pwru-rotate-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn policy(max_size: u64) -> RotationPolicy {
        RotationPolicy {
            max_size,
            ..RotationPolicy::default()
        }
    }

    /// Every file in `dir` with its content (gunzipped), backups sorted by name.
    fn contents(dir: &Path) -> Vec<(String, String)> {
        let mut files: Vec<(String, String)> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let raw = fs::read(&path).unwrap();
                let text = if name.ends_with(".gz") {
                    let mut s = String::new();
                    GzDecoder::new(&raw[..]).read_to_string(&mut s).unwrap();
                    s
                } else {
                    String::from_utf8(raw).unwrap()
                };
                (name, text)
            })
            .collect();
        files.sort();
        files
    }

    #[test]
    fn backup_names_follow_lumberjack() {
        let stamp = "2026-11-22T01-02-03.004";
        assert!(is_stamp(stamp));
        for (path, want) in [
            ("/tmp/pwru.log", "/tmp/pwru-2026-11-22T01-02-03.004.log"),
            ("/tmp/pwru", "/tmp/pwru-2026-11-22T01-02-03.004"),
            ("out.tar.gz", "out.tar-2026-11-22T01-02-03.004.gz"),
        ] {
            assert_eq!(backup_name(Path::new(path), stamp), PathBuf::from(want));
        }
        for bad in ["2026-11-22T01:02:03.004", "2026-11-22T01-02-03", "x"] {
            assert!(!is_stamp(bad), "{bad}");
        }
        let s = local_stamp(&mut WallClock::default(), SystemTime::now());
        assert!(is_stamp(&s), "{s}");
    }

    #[test]
    fn rotates_at_line_boundaries_without_losing_lines() {
        let dir = temp_dir("lines");
        let path = dir.join("pwru.log");
        let lines: Vec<String> = (0..50)
            .map(|i| format!("line {i:03} {}\n", "x".repeat(i % 7)))
            .collect();
        {
            let mut f = RotatingFile::open(&path, policy(64)).unwrap();
            // Several lines per write, as Output's pending buffer does.
            for chunk in lines.chunks(3) {
                f.write_all(chunk.concat().as_bytes()).unwrap();
                assert!(f.size() <= 64, "{}", f.size());
            }
            f.flush().unwrap();
        }
        let files = contents(&dir);
        assert!(files.len() > 5, "{files:?}");
        // Backups in name (= rotation) order, then the current file.
        let mut joined = String::new();
        let mut current = None;
        for (name, text) in &files {
            assert!(text.len() <= 64 && text.ends_with('\n'), "{name}: {text:?}");
            if name == "pwru.log" {
                current = Some(text.clone());
            } else {
                assert!(
                    is_stamp(&name["pwru-".len()..name.len() - ".log".len()]),
                    "{name}"
                );
                joined.push_str(text);
            }
        }
        joined.push_str(&current.expect("current file"));
        assert_eq!(joined, lines.concat());
    }

    #[test]
    fn long_line_gets_its_own_file_and_full_file_rotates_on_open() {
        let dir = temp_dir("long");
        let path = dir.join("trace.json");
        fs::write(&path, "old line\n").unwrap();
        let long = format!("{}\n", "y".repeat(40));
        {
            let mut f = RotatingFile::open(&path, policy(9)).unwrap();
            assert_eq!(f.size(), 0, "a full file is rotated on open");
            f.write_all(long.as_bytes()).unwrap();
            f.write_all(b"short\n").unwrap();
        }
        let files = contents(&dir);
        let texts: Vec<&str> = files.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(files.len(), 3, "{files:?}");
        assert!(
            texts.contains(&"old line\n") && texts.contains(&long.as_str()),
            "{files:?}"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "short\n");
    }

    #[test]
    fn mill_keeps_max_backups_and_compresses() {
        let dir = temp_dir("mill");
        let path = dir.join("pwru.log");
        {
            let mut f = RotatingFile::open(
                &path,
                RotationPolicy {
                    max_size: 6,
                    max_backups: 2,
                    max_age_days: 0,
                    compress: true,
                },
            )
            .unwrap();
            for i in 0..6 {
                f.write_all(format!("ev {i}\n").as_bytes()).unwrap();
            }
            f.wait_for_mill();
        }
        let files = contents(&dir);
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(files.len(), 3, "{names:?}");
        assert!(
            names.iter().filter(|n| n.ends_with(".log.gz")).count() == 2,
            "{names:?}"
        );
        // The two newest backups survive, in order, compressed; the current file holds ev 5.
        let backups: Vec<&str> = files
            .iter()
            .filter(|(n, _)| n.ends_with(".gz"))
            .map(|(_, t)| t.as_str())
            .collect();
        assert_eq!(backups, ["ev 3\n", "ev 4\n"]);
        assert_eq!(fs::read_to_string(&path).unwrap(), "ev 5\n");
    }

    #[test]
    fn mill_drops_backups_older_than_max_age() {
        let dir = temp_dir("age");
        let path = dir.join("pwru.log");
        let now = SystemTime::now();
        let mut clock = WallClock::default();
        let old = backup_name(
            &path,
            &local_stamp(&mut clock, now - Duration::from_secs(3 * 86_400)),
        );
        let recent = backup_name(
            &path,
            &local_stamp(&mut clock, now - Duration::from_secs(3_600)),
        );
        let unrelated = dir.join("other-2020-01-01T00-00-00.000.log");
        for p in [&old, &recent, &unrelated] {
            fs::write(p, "x\n").unwrap();
        }
        let policy = RotationPolicy {
            max_age_days: 2,
            ..RotationPolicy::default()
        };
        assert!(mill(&path, policy, now).is_empty());
        assert!(!old.exists() && recent.exists() && unrelated.exists());
    }

    #[test]
    fn backups_are_listed_newest_first() {
        let dir = temp_dir("list");
        let path = dir.join("p.log");
        for name in [
            "p-2026-01-01T00-00-00.000.log",
            "p-2026-03-01T00-00-00.000.log.gz",
            "p-2026-02-01T00-00-00.000.log",
            "p-garbage.log",
            "p.log",
        ] {
            fs::write(dir.join(name), "").unwrap();
        }
        let stamps: Vec<(String, bool)> = list_backups(&path)
            .unwrap()
            .into_iter()
            .map(|b| (b.stamp, b.compressed))
            .collect();
        assert_eq!(
            stamps,
            [
                ("2026-03-01T00-00-00.000".to_string(), true),
                ("2026-02-01T00-00-00.000".to_string(), false),
                ("2026-01-01T00-00-00.000".to_string(), false),
            ]
        );
    }
}
