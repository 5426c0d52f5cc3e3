//! Signed lists: a remote list whose publisher signs it with minisign is
//! loaded only with a signature that verifies under the publisher's key.
//!
//! ```text
//!  GET list ─► NAME.download ─┐
//!  GET signature_url ─────────┴─► verify (public_key) ── fails: refused, last good copy stays
//!                                     │ verifies
//!                                     ▼
//!            vet (max_shrink...) ─► NAME.list + NAME.minisig ─► reload ─► verify again ─► loaded
//! ```
//!
//! The signature is checked twice: before a download may replace the copy
//! in use ([`verify`], in `http::refresh`), and each time the copy is
//! loaded ([`verify_copy`], from `Snapshot::build`), at start too. The copy
//! was verified when it was adopted; the second check is against what may
//! happen to it since: anyone who can write the state directory (or a disk
//! that returns other bytes) could otherwise have a list that must be signed
//! loaded unsigned. That is why the signature is stored beside the copy.
//!
//! Verification is minisign's own (the `minisign-verify` crate, by
//! minisign's author): Ed25519 over the BLAKE2b-512 hash of the file
//! (pre-hashed, minisign's default since 0.8, read as a stream), or over
//! the file itself (legacy signatures, read whole; a list is at most
//! `max_size_mb`). The trusted comment (minisign writes the signing time
//! and file name in it) is covered by the signature too, and is kept in
//! the list's metadata for `embargo lists` and `/api/lists`.
//!
//! What a signature proves, and what the zone transfer's TSIG proves, are
//! two things (the README says more): TSIG authenticates a transfer from a
//! primary that holds the shared secret, whoever wrote the zone; a minisign
//! signature says the publisher who holds the secret key signed these very
//! bytes, whichever mirror or cache served them.

use std::io::Read;
use std::path::{Path, PathBuf};

use minisign_verify::{PublicKey, Signature};

use crate::config::{ListSpec, Signed};

/// The largest signature accepted: a minisign signature is four lines,
/// about 300 bytes with a long trusted comment.
pub const MAX_SIGNATURE: u64 = 16 * 1024;

/// Why a list's signature does not make it loadable.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no signature stored beside the copy ({}): a copy is loaded only with the signature it was verified with", path.display())]
    Missing { path: PathBuf },
    #[error("not a minisign signature ({0})")]
    Malformed(String),
    #[error("signed with another key than public_key")]
    OtherKey,
    #[error(
        "the signature does not verify: the list (or its signature) is not what the publisher signed"
    )]
    Invalid,
    #[error("public_key: {0}")]
    Key(String),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the signature of the copy at `copy` is kept: `NAME.minisig`
/// beside `NAME.list`.
pub fn path_for(copy: &Path) -> PathBuf {
    copy.with_extension("minisig")
}

/// Verifies that `signature` (a `.minisig` file's text) is `signed`'s
/// publisher's signature of the file at `list`; returns its trusted comment.
pub fn verify(signed: &Signed, list: &Path, signature: &str) -> Result<String, Error> {
    let key = PublicKey::from_base64(&signed.public_key).map_err(|e| Error::Key(e.to_string()))?;
    let sig = Signature::decode(signature).map_err(|e| Error::Malformed(e.to_string()))?;
    let read = |source| Error::Read {
        path: list.to_path_buf(),
        source,
    };
    let verified = match key.verify_stream(&sig) {
        Ok(mut stream) => {
            let mut file = std::fs::File::open(list).map_err(read)?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = file.read(&mut buf).map_err(read)?;
                if n == 0 {
                    break;
                }
                stream.update(&buf[..n]);
            }
            stream.finalize()
        }
        // A legacy signature covers the bytes themselves, not their hash.
        Err(minisign_verify::Error::UnsupportedLegacyMode) => {
            let bytes = std::fs::read(list).map_err(read)?;
            key.verify(&bytes, &sig, true)
        }
        Err(e) => Err(e),
    };
    match verified {
        Ok(()) => Ok(sig.trusted_comment().to_owned()),
        Err(minisign_verify::Error::UnexpectedKeyId) => Err(Error::OtherKey),
        Err(minisign_verify::Error::IoError(source)) => Err(read(source)),
        Err(_) => Err(Error::Invalid),
    }
}

/// Verifies the copy in use of `spec` against the signature stored beside
/// it: `Ok(None)` for a list that needs no signature, else the trusted
/// comment. What `Snapshot::build` asks before it loads a copy.
pub fn verify_copy(spec: &ListSpec) -> Result<Option<String>, Error> {
    let Some(signed) = &spec.signature else {
        return Ok(None);
    };
    let path = path_for(&spec.path);
    let text = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::Missing { path }),
        Err(source) => return Err(Error::Read { path, source }),
    };
    if text.len() as u64 > MAX_SIGNATURE {
        return Err(Error::Malformed(format!(
            "{} is larger than {MAX_SIGNATURE} bytes",
            path.display()
        )));
    }
    let text = String::from_utf8(text).map_err(|_| Error::Malformed("not UTF-8".into()))?;
    verify(signed, &spec.path, &text).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key pair and a (pre-hashed) signature of `data` made with it.
    fn sign(data: &[u8]) -> (String, String) {
        let pair = minisign::KeyPair::generate_unencrypted_keypair().expect("keypair");
        let sig = minisign::sign(
            Some(&pair.pk),
            &pair.sk,
            std::io::Cursor::new(data),
            Some("timestamp:1700000000\tfile:list.txt"),
            None,
        )
        .expect("sign");
        (pair.pk.to_base64(), sig.to_string())
    }

    fn signed(key: &str) -> Signed {
        Signed {
            public_key: key.into(),
            url: "http://127.0.0.1/feed.minisig".into(),
        }
    }

    #[test]
    fn a_signature_verifies_only_for_its_bytes_and_its_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let list = dir.path().join("feed.list");
        let data = b"seized.example\nother.example\n";
        std::fs::write(&list, data).expect("write");
        let (key, sig) = sign(data);
        assert_eq!(
            verify(&signed(&key), &list, &sig).expect("verifies"),
            "timestamp:1700000000\tfile:list.txt"
        );
        // One name more: not what was signed.
        std::fs::write(&list, b"seized.example\nother.example\nx.example\n").expect("write");
        assert!(matches!(
            verify(&signed(&key), &list, &sig),
            Err(Error::Invalid)
        ));
        std::fs::write(&list, data).expect("write");
        // Another publisher's key.
        let (other, _) = sign(data);
        assert!(matches!(
            verify(&signed(&other), &list, &sig),
            Err(Error::OtherKey)
        ));
        assert!(matches!(
            verify(&signed(&key), &list, "not a signature"),
            Err(Error::Malformed(_))
        ));
    }

    /// A legacy signature (older minisign, Ed25519 over the bytes
    /// themselves): minisign-verify's own test vector.
    #[test]
    fn legacy_signatures_verify_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let list = dir.path().join("feed.list");
        std::fs::write(&list, b"test").expect("write");
        let key = signed("RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3");
        let sig = "untrusted comment: signature from minisign secret key
RWQf6LRCGA9i59SLOFxz6NxvASXDJeRtuZykwQepbDEGt87ig1BNpWaVWuNrm73YiIiJbq71Wi+dP9eKL8OC351vwIasSSbXxwA=
trusted comment: timestamp:1555779966\tfile:test
QtKMXWyYcwdpZAlPF7tE2ENJkRd1ujvKjlj1m9RtHTBnZPa5WKU5uWRs5GoP5M/VqE81QFuMKI5k/SfNQUaOAA==";
        assert!(verify(&key, &list, sig).is_ok());
        std::fs::write(&list, b"Test").expect("write");
        assert!(matches!(verify(&key, &list, sig), Err(Error::Invalid)));
    }
}
