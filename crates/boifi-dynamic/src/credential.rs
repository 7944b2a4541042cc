//! The read credential from a file (`control_plane_token_file`, a mounted Secret's key),
//! re-read before every config request, so a rotated Secret is sent without a restart.
//!
//! A read costs one `open` and a read of at most [`READ_LIMIT`] bytes, once per config request
//! (a long-poll: every 30 s, or after each change): nothing on the request path. A file that
//! is missing, larger than the limit, not UTF-8 or not a token is reported once (per distinct
//! problem) and changes nothing: the last credential read stays in use, because a Secret
//! being replaced is swapped atomically by the kubelet and a missing file is a mistake to
//! show, not a reason to drop a credential that works. Nothing here logs the token.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use boifi_core::wire::{ReadCredential, MAX_CREDENTIAL_BYTES};

/// The most bytes read from the file: a token of [`MAX_CREDENTIAL_BYTES`] with room for
/// surrounding whitespace; a larger file is refused unread.
pub const READ_LIMIT: usize = 2 * MAX_CREDENTIAL_BYTES;

/// How important a line about the file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// A credential read for the first time, or a changed one.
    Info,
    /// The file cannot be used.
    Warn,
}

/// The credential file and what it held when last read.
#[derive(Debug)]
pub struct CredentialFile {
    path: PathBuf,
    current: Option<ReadCredential>,
    /// The last problem reported, so each is reported once.
    problem: Option<String>,
}

impl CredentialFile {
    /// A file not read yet.
    pub fn new(path: impl Into<PathBuf>) -> CredentialFile {
        CredentialFile {
            path: path.into(),
            current: None,
            problem: None,
        }
    }

    /// Reads the file again: the credential to send (the last one read when the file cannot be
    /// used now), and a line for the log when what the file holds changed.
    pub fn refresh(&mut self) -> (Option<ReadCredential>, Option<(Notice, String)>) {
        let path = self.path.display();
        let notice = match read_credential(&self.path) {
            Ok(credential) => {
                self.problem = None;
                let notice = match &self.current {
                    None => Some(format!(
                        "boifi: sending the read credential of `{path}` on config requests"
                    )),
                    Some(held) if *held != credential => Some(format!(
                        "boifi: the read credential in `{path}` changed; sending the new one"
                    )),
                    Some(_) => None,
                };
                self.current = Some(credential);
                notice.map(|line| (Notice::Info, line))
            }
            Err(problem) if self.problem.as_deref() == Some(problem.as_str()) => None,
            Err(problem) => {
                let keeping = if self.current.is_some() {
                    "sending the credential it held before"
                } else {
                    "sending no credential"
                };
                let line = format!("boifi: control_plane_token_file `{path}` {problem}; {keeping}");
                self.problem = Some(problem);
                Some((Notice::Warn, line))
            }
        };
        (self.current.clone(), notice)
    }
}

/// The file's credential, or what is wrong with it (never its content).
fn read_credential(path: &std::path::Path) -> Result<ReadCredential, String> {
    let file = File::open(path).map_err(|e| format!("cannot be opened ({e})"))?;
    let mut bytes = Vec::new();
    let limit = u64::try_from(READ_LIMIT)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot be read ({e})"))?;
    if bytes.len() > READ_LIMIT {
        return Err(format!("is larger than {READ_LIMIT} bytes"));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| "is not UTF-8 text".to_owned())?;
    ReadCredential::parse(text).map_err(|e| format!("is not a usable bearer token: it {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Dir {
        fn new(name: &str) -> Dir {
            let dir =
                std::env::temp_dir().join(format!("boifi-cred-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn header(c: &Option<ReadCredential>) -> Option<&str> {
        c.as_ref().map(ReadCredential::header_value)
    }

    #[test]
    fn a_changed_file_is_sent_at_the_next_request_and_said_once() {
        let dir = Dir::new("rotate");
        let path = dir.0.join("token");
        std::fs::write(&path, "first-s3cr3t\n").unwrap();
        let mut file = CredentialFile::new(&path);
        let (c, notice) = file.refresh();
        assert_eq!(header(&c), Some("Bearer first-s3cr3t"));
        let (level, line) = notice.unwrap();
        assert_eq!(level, Notice::Info);
        assert!(line.contains("sending the read credential of"), "{line}");
        // Unchanged: nothing to say.
        assert_eq!(file.refresh().1, None);
        std::fs::write(&path, "second-s3cr3t").unwrap();
        let (c, notice) = file.refresh();
        assert_eq!(header(&c), Some("Bearer second-s3cr3t"));
        let (_, line) = notice.unwrap();
        assert!(line.contains("changed; sending the new one"), "{line}");
        assert!(!line.contains("s3cr3t"), "{line}");
    }

    #[test]
    fn a_missing_huge_or_non_utf8_file_is_reported_once_and_keeps_the_last_credential() {
        let dir = Dir::new("bad");
        let path = dir.0.join("token");
        let mut file = CredentialFile::new(&path);
        let (c, notice) = file.refresh();
        assert_eq!(c, None);
        let (level, line) = notice.unwrap();
        assert_eq!(level, Notice::Warn);
        assert!(
            line.contains("cannot be opened") && line.ends_with("sending no credential"),
            "{line}"
        );
        assert_eq!(
            file.refresh(),
            (None, None),
            "the same problem is said once"
        );
        std::fs::write(&path, "good-s3cr3t").unwrap();
        assert_eq!(header(&file.refresh().0), Some("Bearer good-s3cr3t"));
        for (content, problem) in [
            (vec![b'x'; READ_LIMIT + 1], "is larger than 8192 bytes"),
            (b"s3cr3t\xff".to_vec(), "is not UTF-8 text"),
            (b"two s3cr3t".to_vec(), "is not a usable bearer token: it has a character other than visible ASCII at byte 3"),
            (b"\n".to_vec(), "is not a usable bearer token: it is empty"),
        ] {
            std::fs::write(&path, &content).unwrap();
            let (c, notice) = file.refresh();
            assert_eq!(header(&c), Some("Bearer good-s3cr3t"), "{problem}");
            let (level, line) = notice.unwrap();
            assert_eq!(level, Notice::Warn);
            assert!(line.contains(problem), "{line}");
            assert!(line.ends_with("sending the credential it held before"), "{line}");
            assert!(!line.contains("s3cr3t"), "{line}");
        }
        // A directory where the file should be: reported, never a panic.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let (c, notice) = file.refresh();
        assert_eq!(header(&c), Some("Bearer good-s3cr3t"));
        assert!(notice.is_some());
    }
}
