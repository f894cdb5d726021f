//! The PostgreSQL backend's reader for audit verification.
//!
//! Verification reads every entry of a chain. As query rows, each entry is decoded column by
//! column into an `Entry` (a dozen allocations) before it is hashed. Here a page comes as one
//! `COPY … TO STDOUT (FORMAT binary)` stream, and each entry is encoded and hashed straight from
//! the stream's bytes ([`Fields`] borrows them).
//!
//! `COPY` takes no bind parameters, so the statement stays static and reads the page's bounds
//! from transaction-local settings that a parameterised `set_config` call binds first.

use crate::audit::{Fields, Link};

use super::StorageError;

/// Binds the page's bounds (cellule, after, limit) for [`COPY_PAGE`], in the same transaction.
pub(crate) const BIND_PAGE: &str = "SELECT set_config('cellule.chain_cellule', $1, true), \
     set_config('cellule.chain_after', $2, true), set_config('cellule.chain_limit', $3, true)";

/// One page of entries, in sequence order, in the columns [`PageReader`] reads. The planner cannot
/// see the settings' values: bounding the sequence on both sides keeps it on the primary key
/// even before the table has statistics (with only a lower bound and a `LIMIT`, a fresh table
/// was sorted whole for every page).
pub(crate) const COPY_PAGE: &str = "COPY (SELECT seq, at_us, actor, actor_role, actor_org, action, \
       case_id, case_ref, target_kind, target_id, outcome, reason, request_id, cases, prev_hash, hash \
     FROM audit_entries WHERE cellule = current_setting('cellule.chain_cellule') \
       AND seq > current_setting('cellule.chain_after')::bigint \
       AND seq <= current_setting('cellule.chain_after')::bigint \
         + current_setting('cellule.chain_limit')::bigint \
     ORDER BY seq) TO STDOUT (FORMAT binary)";

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
const COLUMNS: i16 = 16;
/// Links made room for ahead: at most a verification page's worth, whatever the caller asks.
const PAGE_ROWS: usize = crate::audit::verify::PAGE as usize;

fn corrupt(what: &str) -> StorageError {
    StorageError::Corrupt(format!("audit page: {what}"))
}

/// Why a row could not be read: its bytes have not all arrived yet, or they are wrong.
enum Bad {
    Short,
    Corrupt(String),
}

impl From<Bad> for StorageError {
    fn from(b: Bad) -> Self {
        match b {
            Bad::Short => corrupt("truncated"),
            Bad::Corrupt(what) => corrupt(&what),
        }
    }
}

/// A cursor over the binary `COPY` format.
struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Bad> {
        if self.data.len() < n {
            return Err(Bad::Short);
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Bad> {
        self.take(N)?.try_into().map_err(|_| Bad::Short)
    }

    fn i16(&mut self) -> Result<i16, Bad> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, Bad> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    /// One field: `None` for NULL.
    fn field(&mut self) -> Result<Option<&'a [u8]>, Bad> {
        match self.i32()? {
            -1 => Ok(None),
            len => {
                let len = usize::try_from(len)
                    .map_err(|_| Bad::Corrupt("negative field length".into()))?;
                Ok(Some(self.take(len)?))
            }
        }
    }

    fn required(&mut self, column: &str) -> Result<&'a [u8], Bad> {
        self.field()?
            .ok_or_else(|| Bad::Corrupt(format!("{column} is null")))
    }

    fn int8(&mut self, column: &str) -> Result<i64, Bad> {
        let bytes: [u8; 8] = self
            .required(column)?
            .try_into()
            .map_err(|_| Bad::Corrupt(format!("{column} is not an int8")))?;
        Ok(i64::from_be_bytes(bytes))
    }
}

/// One page of [`COPY_PAGE`] output, read as it arrives: each entry is encoded and hashed as
/// soon as its row is whole, and its bytes are let go. A page then holds its links (some 100
/// bytes an entry) and never its entries: an entry naming the cases of an agenda build is
/// hundreds of kilobytes at 10,000 cases, and four pages of 20,000 are read at once.
///
/// PostgreSQL sends one `CopyData` message per row (the header comes with the first), so a row
/// is nearly always parsed from its own message; a row cut across messages waits in `pending`.
pub(crate) struct PageReader {
    cellule: String,
    pending: Vec<u8>,
    header: bool,
    ended: bool,
    links: Vec<Link>,
    canonical: Vec<u8>,
}

impl PageReader {
    /// A reader for a page of `cellule`'s chain of up to `rows` entries.
    pub(crate) fn new(cellule: &str, rows: usize) -> Self {
        PageReader {
            cellule: cellule.to_owned(),
            pending: Vec::new(),
            header: false,
            ended: false,
            links: Vec::with_capacity(rows.min(PAGE_ROWS)),
            canonical: Vec::with_capacity(512),
        }
    }

    /// Reads the next bytes of the stream.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<(), StorageError> {
        if self.pending.is_empty() {
            let used = self.parse(chunk)?;
            self.pending.extend_from_slice(&chunk[used..]);
        } else {
            let mut pending = std::mem::take(&mut self.pending);
            pending.extend_from_slice(chunk);
            let used = self.parse(&pending)?;
            pending.drain(..used);
            self.pending = pending;
        }
        Ok(())
    }

    /// The page's links, once the stream has ended.
    pub(crate) fn finish(self) -> Result<Vec<Link>, StorageError> {
        if !self.ended || !self.pending.is_empty() {
            return Err(corrupt("truncated"));
        }
        Ok(self.links)
    }

    /// Reads the header (first) and every whole row of `data`; returns how many bytes it used.
    fn parse(&mut self, data: &[u8]) -> Result<usize, StorageError> {
        let mut c = Cursor { data };
        if !self.header {
            match header(&mut c) {
                Ok(()) => self.header = true,
                Err(Bad::Short) => return Ok(0),
                Err(e) => return Err(e.into()),
            }
        }
        let mut used = data.len() - c.data.len();
        while !self.ended {
            match self.row(&mut c) {
                Ok(()) => used = data.len() - c.data.len(),
                Err(Bad::Short) => break,
                Err(e) => return Err(e.into()),
            }
        }
        if self.ended && used < data.len() {
            return Err(corrupt("bytes after the end of the page"));
        }
        Ok(used)
    }

    /// One row, hashed into a link, or the end of the page.
    fn row(&mut self, c: &mut Cursor<'_>) -> Result<(), Bad> {
        match c.i16()? {
            -1 => {
                self.ended = true;
                return Ok(());
            }
            COLUMNS => {}
            n => return Err(Bad::Corrupt(format!("{n} columns in a row"))),
        }
        let fields = Fields {
            cellule: self.cellule.as_bytes(),
            seq: c.int8("seq")?,
            at_us: c.int8("at_us")?,
            actor: c.required("actor")?,
            actor_role: c.required("actor_role")?,
            actor_org: c.field()?,
            action: c.required("action")?,
            case_id: c.field()?,
            case_ref: c.field()?,
            target_kind: c.field()?,
            target_id: c.field()?,
            outcome: c.required("outcome")?,
            reason: c.field()?,
            request_id: c.field()?,
            cases: c.field()?,
        };
        let prev_hash = c.required("prev_hash")?;
        let hash = c.required("hash")?;
        self.links
            .push(Link::of(&fields, prev_hash, hash, &mut self.canonical));
        Ok(())
    }
}

/// The stream's header: signature, flags and the (skipped) extension area.
fn header(c: &mut Cursor<'_>) -> Result<(), Bad> {
    if c.take(SIGNATURE.len())? != SIGNATURE {
        return Err(Bad::Corrupt("not binary COPY output".into()));
    }
    let _flags = c.i32()?;
    let extension = usize::try_from(c.i32()?).map_err(|_| Bad::Corrupt("bad header".into()))?;
    c.take(extension)?;
    Ok(())
}

/// The links of a whole page of [`COPY_PAGE`] output, of up to `rows` entries.
#[cfg(test)]
fn links(cellule: &str, data: &[u8], rows: usize) -> Result<Vec<Link>, StorageError> {
    let mut page = PageReader::new(cellule, rows);
    page.feed(data)?;
    page.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(out: &mut Vec<u8>, value: Option<&[u8]>) {
        match value {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(v) => {
                out.extend_from_slice(&i32::try_from(v.len()).unwrap_or(0).to_be_bytes());
                out.extend_from_slice(v);
            }
        }
    }

    /// Even entries name a set of cases.
    fn cases(seq: i64) -> Option<&'static [u8]> {
        (seq % 2 == 0).then_some(&br#"[{"case_id":"c1","case_ref":"CC-1"}]"#[..])
    }

    fn page(rows: &[(i64, Option<&[u8]>)]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        for (seq, org) in rows {
            out.extend_from_slice(&COLUMNS.to_be_bytes());
            field(&mut out, Some(&seq.to_be_bytes()));
            field(
                &mut out,
                Some(&(1_700_000_000_000_000i64 + seq).to_be_bytes()),
            );
            for v in [
                Some(&b"alice"[..]),
                Some(b"member"),
                *org,
                Some(b"read_case"),
            ] {
                field(&mut out, v);
            }
            for v in [Some(&b"c1"[..]), Some(b"CC-1"), None, None] {
                field(&mut out, v);
            }
            for v in [Some(&b"allowed"[..]), None, Some(b"req"), cases(*seq)] {
                field(&mut out, v);
            }
            field(&mut out, Some(&[7u8; 32]));
            field(&mut out, Some(&[9u8; 32]));
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    #[test]
    fn links_are_those_of_the_same_entries() {
        let data = page(&[(1, Some(b"cmp")), (2, None)]);
        let links = links("perpignan", &data, 2).expect("links");
        assert_eq!(links.len(), 2);
        for (link, (seq, org)) in links.iter().zip([(1i64, Some("cmp")), (2, None)]) {
            let entry = crate::audit::Entry {
                cellule: "perpignan".into(),
                seq,
                at_us: 1_700_000_000_000_000 + seq,
                actor: "alice".into(),
                actor_role: "member".into(),
                actor_org: org.map(str::to_owned),
                action: "read_case".into(),
                case_id: Some("c1".into()),
                case_ref: Some("CC-1".into()),
                target_kind: None,
                target_id: None,
                outcome: "allowed".into(),
                reason: None,
                request_id: Some("req".into()),
                cases: cases(seq).map(|c| String::from_utf8_lossy(c).into_owned()),
                prev_hash: vec![7; 32],
                hash: vec![9; 32],
            };
            assert_eq!(*link, Link::from(&entry));
        }
    }

    #[test]
    fn a_page_cut_anywhere_reads_the_same() {
        let data = page(&[(1, Some(b"cmp")), (2, None), (3, Some(b"ccas"))]);
        let whole = links("perpignan", &data, 3).expect("links");
        assert_eq!(whole.len(), 3);
        for size in [1, 2, 7, 19, 64, data.len() - 1] {
            let mut reader = PageReader::new("perpignan", 3);
            for chunk in data.chunks(size) {
                reader.feed(chunk).expect("feed");
            }
            assert_eq!(reader.finish().expect("finish"), whole, "chunks of {size}");
        }
        // A stream that stops before the end of the page is corrupt, wherever it stops.
        for cut in [5, 30, data.len() - 2] {
            let mut reader = PageReader::new("perpignan", 3);
            reader.feed(&data[..cut]).expect("feed");
            assert!(matches!(reader.finish(), Err(StorageError::Corrupt(_))));
        }
        // Nothing may follow the end of the page.
        let mut longer = data.clone();
        longer.push(0);
        assert!(matches!(
            links("perpignan", &longer, 3),
            Err(StorageError::Corrupt(_))
        ));
    }

    #[test]
    fn malformed_pages_are_corrupt_not_panics() {
        let good = page(&[(1, None)]);
        for bad in [
            &good[..5],
            &good[..good.len() - 3],
            &good[..good.len() - 2],
            b"COPY\n\xff\r\n\0\0\0\0\0\0\0\0\0\xff\xff",
        ] {
            assert!(matches!(
                links("perpignan", bad, 1),
                Err(StorageError::Corrupt(_))
            ));
        }
        let mut wrong_width = good.clone();
        wrong_width[19] = 3;
        assert!(matches!(
            links("perpignan", &wrong_width, 1),
            Err(StorageError::Corrupt(_))
        ));
    }
}
