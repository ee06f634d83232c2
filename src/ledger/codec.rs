//! How the ledger encodes and identifies what it records: a row's fields as one CSV line, an
//! activity's fingerprint (to find the same row in another run), and an input's SHA-256 (to
//! tell whether it changed between runs).

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;

use csv::ByteRecord;
use sha2::{Digest, Sha256};

use super::LedgerError;
use crate::lsq::api::ActivityItem;

/// A record as one CSV line (RFC 4180 quoting), readable with the `sqlite3` command.
pub(crate) fn encode_record(record: &ByteRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.as_slice().len() + record.len() + 2);
    if record.len() == 1 && record[0].is_empty() {
        // A lone empty field must not encode to nothing, which would decode as no field at all.
        out.extend_from_slice(b"\"\"");
        return out;
    }
    for (i, field) in record.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if field
            .iter()
            .any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'))
        {
            out.push(b'"');
            for &b in field {
                if b == b'"' {
                    out.push(b'"');
                }
                out.push(b);
            }
            out.push(b'"');
        } else {
            out.extend_from_slice(field);
        }
    }
    out
}

/// The inverse of [`encode_record`]. Hand-written rather than a `csv::Reader` per row: building
/// a reader costs more than the row itself (it was a quarter of an import's CPU), and the
/// encoding is ours, so its few rules are all there is to read.
pub(crate) fn decode_record(bytes: &[u8]) -> Result<ByteRecord, LedgerError> {
    let corrupt = || LedgerError::Corrupt("a stored record cannot be read".to_string());
    let mut record = ByteRecord::new();
    if bytes.is_empty() {
        return Ok(record);
    }
    let mut field = Vec::new();
    let mut at = 0;
    loop {
        field.clear();
        if bytes.get(at) == Some(&b'"') {
            at += 1;
            loop {
                match (bytes.get(at), bytes.get(at + 1)) {
                    (Some(b'"'), Some(b'"')) => {
                        field.push(b'"');
                        at += 2;
                    }
                    (Some(b'"'), _) => {
                        at += 1;
                        break;
                    }
                    (Some(&b), _) => {
                        field.push(b);
                        at += 1;
                    }
                    (None, _) => return Err(corrupt()),
                }
            }
        } else {
            let end = bytes[at..]
                .iter()
                .position(|&b| b == b',')
                .map_or(bytes.len(), |p| at + p);
            field.extend_from_slice(&bytes[at..end]);
            at = end;
        }
        record.push_field(&field);
        match bytes.get(at) {
            None => return Ok(record),
            Some(b',') => at += 1,
            Some(_) => return Err(corrupt()),
        }
    }
}

/// The identity of an activity, for finding the same row in another run: a hash of everything
/// that is sent (lead, code, note, owner, date, custom fields in name order).
pub(crate) fn fingerprint(item: &ActivityItem) -> String {
    let mut hasher = Sha256::new();
    let mut part = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    part(item.related_prospect_id.to_ascii_lowercase().as_bytes());
    part(item.activity_event.to_string().as_bytes());
    part(item.activity_note.as_deref().unwrap_or("").as_bytes());
    part(
        item.activity_owner_email
            .as_deref()
            .unwrap_or("")
            .to_ascii_lowercase()
            .as_bytes(),
    );
    part(item.activity_date_time.as_deref().unwrap_or("").as_bytes());
    let mut fields: Vec<_> = item.fields.iter().collect();
    fields.sort_by(|a, b| a.schema_name.cmp(&b.schema_name));
    for field in fields {
        part(field.schema_name.as_bytes());
        part(field.value.as_bytes());
    }
    hex16(&hasher.finalize())
}

/// The first 16 bytes of a digest as 32 lowercase hex digits.
pub(crate) fn hex16(digest: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(32);
    for b in digest.iter().take(16) {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    text
}

/// SHA-256 of everything read through it, for telling whether an input changed between runs.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: std::sync::Arc<Mutex<Sha256>>,
}

/// The finished digest of a [`HashingReader`], available once the reader is dropped or done.
#[derive(Clone)]
pub(crate) struct DigestHandle(std::sync::Arc<Mutex<Sha256>>);

impl DigestHandle {
    pub(crate) fn hex(&self) -> String {
        let hasher = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> (HashingReader<R>, DigestHandle) {
        let hasher = std::sync::Arc::new(Mutex::new(Sha256::new()));
        (
            HashingReader {
                inner,
                hasher: hasher.clone(),
            },
            DigestHandle(hasher),
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .update(&buf[..n]);
        Ok(n)
    }
}

/// SHA-256 of a file's bytes.
pub(crate) fn hash_file(path: &Path) -> std::io::Result<String> {
    let file = File::open(path)?;
    let (mut reader, digest) =
        HashingReader::new(std::io::BufReader::with_capacity(256 * 1024, file));
    std::io::copy(&mut reader, &mut std::io::sink())?;
    Ok(digest.hex())
}
