//! The parts of an `.xlsx`/`.xlsm` package that reading one worksheet as a stream needs, read the
//! way calamine reads them for its whole-sheet path, so both paths see the same sheets, dates and
//! text: the zip archive's entries (found ignoring case, as calamine does), the workbook's sheets
//! in order with their parts (`_rels/.rels` -> `workbook.xml` and its relationships), the 1904
//! date flag, and which cell styles are dates (`styles.xml`).
//!
//! A path and a sheet name come in; a [`Package`] comes out, and [`Package::open_entry`] hands
//! out a large part (the shared strings, a worksheet) as an owned reader of its decompressed bytes
//! that reads the file through its own handle, so it can live beside the package rather than
//! borrow it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use zip::{CompressionMethod, ZipArchive};

/// Why a workbook could not be read as a stream; each becomes a file-level error naming the file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a readable .xlsx file: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("malformed XML: {0}")]
    Xml(#[from] quick_xml::Error),
    #[error("malformed XML attribute: {0}")]
    Attr(#[from] quick_xml::events::attributes::AttrError),
    #[error("{0}")]
    Strings(#[from] crate::input::xlsx::strings::StringsError),
    #[error("{0}")]
    Malformed(String),
}

/// How a cell style shows a number: calamine's `CellFormat`, which decides what becomes a date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumberKind {
    Other,
    DateTime,
    TimeDelta,
}

/// One workbook, opened: what the sheets' cells need to be read as the whole-sheet path reads them.
pub(crate) struct Package {
    path: PathBuf,
    archive: ZipArchive<BufReader<File>>,
    /// Lower-case entry name (with `/`) -> the name as stored.
    names: HashMap<String, String>,
    /// Sheet names in workbook order, with their part's entry name.
    pub(crate) sheets: Vec<(String, String)>,
    /// Dates count from 1904-01-01 (old Mac workbooks) rather than 1900.
    pub(crate) is_1904: bool,
    /// By cell style index (`s="3"`), how its numbers are shown.
    pub(crate) formats: Vec<NumberKind>,
    /// The folder of the workbook part (`xl/`), where the shared strings are.
    xl_path: String,
}

/// An XML reader configured as calamine configures its own, so text comes out the same.
pub(crate) fn xml_reader<R: BufRead>(read: R) -> Reader<R> {
    let mut reader = Reader::from_reader(read);
    let config = reader.config_mut();
    config.check_end_names = false;
    config.trim_text(false);
    config.check_comments = false;
    config.expand_empty_elements = true;
    reader
}

/// The raw value of attribute `name` (by local name, so `r:id` is `id`).
pub(crate) fn attr<'a>(
    e: &'a BytesStart<'_>,
    name: &str,
) -> Result<Option<std::borrow::Cow<'a, str>>, ReadError> {
    for a in e.attributes().with_checks(false) {
        let a = a?;
        if a.key.local_name().as_ref() == name {
            return Ok(Some(a.value));
        }
    }
    Ok(None)
}

/// Attribute `name` as text, entities resolved.
fn attr_text(e: &BytesStart<'_>, name: &str) -> Result<Option<String>, ReadError> {
    for a in e.attributes().with_checks(false) {
        let a = a?;
        if a.key.local_name().as_ref() == name {
            let text = quick_xml::escape::unescape(&a.value).map_err(quick_xml::Error::from)?;
            return Ok(Some(text.into_owned()));
        }
    }
    Ok(None)
}

impl Package {
    /// Opens the archive and reads the workbook's sheets and styles (not the shared strings, nor
    /// any sheet).
    pub(crate) fn open(path: &Path) -> Result<Package, ReadError> {
        let file = File::open(path)?;
        let archive = ZipArchive::new(BufReader::new(file))?;
        let names = archive
            .file_names()
            .map(|n| n.map(|n| (n.replace('\\', "/").to_ascii_lowercase(), n.into_owned())))
            .collect::<Result<_, _>>()?;
        let mut package = Package {
            path: path.to_path_buf(),
            archive,
            names,
            sheets: Vec::new(),
            is_1904: false,
            formats: Vec::new(),
            xl_path: "xl/".to_string(),
        };
        let workbook = package.read_package_relationships()?;
        package.read_styles()?;
        let relationships = package.read_relationships(&workbook)?;
        package.read_workbook(&workbook, &relationships)?;
        Ok(package)
    }

    /// The stored name of an entry, matched ignoring case and `\` for `/`.
    fn entry_name(&self, name: &str) -> Option<String> {
        self.names.get(&name.to_ascii_lowercase()).cloned()
    }

    /// Parses a small part with `each` called on every start tag; `false` when there is no
    /// such part.
    fn with_part(
        &mut self,
        name: &str,
        mut each: impl FnMut(
            &mut Reader<BufReader<&mut dyn Read>>,
            &BytesStart<'_>,
        ) -> Result<(), ReadError>,
    ) -> Result<bool, ReadError> {
        let Some(stored) = self.entry_name(name) else {
            return Ok(false);
        };
        let mut entry = self.archive.by_name(&stored)?;
        let read: &mut dyn Read = &mut entry;
        let mut xml = xml_reader(BufReader::new(read));
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match xml.read_event_into(&mut buf)? {
                Event::Start(e) => {
                    let e = e.into_owned();
                    each(&mut xml, &e)?;
                }
                Event::Eof => return Ok(true),
                _ => {}
            }
        }
    }

    /// `_rels/.rels`: where the workbook part is; sets the folder, returns the part's name.
    fn read_package_relationships(&mut self) -> Result<String, ReadError> {
        let mut target = None;
        let found = self.with_part("_rels/.rels", |_, e| {
            if e.local_name().as_ref() == "Relationship" {
                let is_document =
                    attr(e, "Type")?.is_some_and(|t| t.ends_with("/relationships/officeDocument"));
                if is_document && let Some(t) = attr_text(e, "Target")? {
                    target = Some(t);
                }
            }
            Ok(())
        })?;
        let target = match (found, target) {
            (false, _) => return Err(ReadError::Malformed("no _rels/.rels part".into())),
            (true, None) => {
                return Err(ReadError::Malformed(
                    "the package names no workbook part".into(),
                ));
            }
            (true, Some(target)) => target,
        };
        let (dir, name) = match target.rfind('/') {
            Some(i) => target.split_at(i + 1),
            None => ("", target.as_str()),
        };
        self.xl_path = dir.strip_prefix('/').unwrap_or(dir).to_string();
        Ok(if name.is_empty() {
            "workbook.xml".to_string()
        } else {
            name.to_string()
        })
    }

    /// The workbook part's relationships: id -> (target, type).
    fn read_relationships(
        &mut self,
        workbook: &str,
    ) -> Result<HashMap<String, (String, String)>, ReadError> {
        let path = format!("{}_rels/{workbook}.rels", self.xl_path);
        let mut relationships = HashMap::new();
        let found = self.with_part(&path, |_, e| {
            if e.local_name().as_ref() == "Relationship"
                && let Some(id) = attr(e, "Id")?
            {
                let text = |v: Option<std::borrow::Cow<'_, str>>| {
                    v.map(|v| v.into_owned()).unwrap_or_default()
                };
                relationships.insert(
                    id.into_owned(),
                    (text(attr(e, "Target")?), text(attr(e, "Type")?)),
                );
            }
            Ok(())
        })?;
        if !found {
            return Err(ReadError::Malformed(format!("no {path} part")));
        }
        Ok(relationships)
    }

    /// `workbook.xml`: the sheets in order, and the 1904 flag.
    fn read_workbook(
        &mut self,
        workbook: &str,
        relationships: &HashMap<String, (String, String)>,
    ) -> Result<(), ReadError> {
        let path = format!("{}{workbook}", self.xl_path);
        let xl_path = self.xl_path.clone();
        let mut sheets = Vec::new();
        let mut is_1904 = false;
        self.with_part(&path, |_, e| {
            match e.local_name().as_ref() {
                "sheet" => {
                    let name = attr_text(e, "name")?.unwrap_or_default();
                    let id = attr(e, "id")?.map(|v| v.into_owned()).unwrap_or_default();
                    let (target, kind) = relationships.get(&id).ok_or_else(|| {
                        ReadError::Malformed(format!("sheet {name:?} has no relationship"))
                    })?;
                    let part = match target.strip_prefix('/') {
                        Some(absolute) => absolute.to_string(),
                        None => format!("{xl_path}{target}"),
                    };
                    let known = ["worksheet", "chartsheet", "dialogsheet"];
                    if !kind.rsplit('/').next().is_some_and(|k| known.contains(&k)) {
                        return Err(ReadError::Malformed(format!(
                            "sheet {name:?} is of an unknown kind ({kind})"
                        )));
                    }
                    sheets.push((name, part));
                }
                // `<x15:workbookPr>` in an extension list has the same local name and no flag.
                "workbookPr" => {
                    if let Some(v) = attr(e, "date1904")? {
                        is_1904 = v.as_ref() == "1" || v.as_ref() == "true";
                    }
                }
                _ => {}
            }
            Ok(())
        })?;
        self.sheets = sheets;
        self.is_1904 = is_1904;
        Ok(())
    }

    /// `styles.xml`: for each cell style (`<cellXfs>`), whether its number format is a date.
    fn read_styles(&mut self) -> Result<(), ReadError> {
        let path = format!("{}styles.xml", self.xl_path);
        let mut custom: HashMap<String, String> = HashMap::new();
        let mut formats = Vec::new();
        let mut buf = Vec::new();
        self.with_part(&path, |xml, e| {
            match e.local_name().as_ref() {
                "numFmt" => {
                    if let (Some(id), Some(code)) =
                        (attr(e, "numFmtId")?, attr_text(e, "formatCode")?)
                    {
                        custom.insert(id.into_owned(), code);
                    }
                }
                "cellXfs" => {
                    // The `xf`s of `<cellXfs>` only: `<cellStyleXfs>` holds others.
                    loop {
                        buf.clear();
                        match xml.read_event_into(&mut buf)? {
                            Event::Start(xf) if xf.local_name().as_ref() == "xf" => {
                                formats.push(match attr(&xf, "numFmtId")? {
                                    None => NumberKind::Other,
                                    Some(id) => match custom.get(id.as_ref()) {
                                        Some(code) => custom_number_format(code),
                                        None => builtin_number_format(&id),
                                    },
                                });
                            }
                            Event::End(end) if end.local_name().as_ref() == "cellXfs" => break,
                            Event::Eof => break,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
            Ok(())
        })?;
        self.formats = formats;
        Ok(())
    }

    /// The shared-strings part's stored name, if the workbook has one.
    pub(crate) fn shared_strings(&self) -> Option<String> {
        self.entry_name(&format!("{}sharedStrings.xml", self.xl_path))
    }

    /// The stored name of a sheet's part.
    pub(crate) fn sheet_part(&self, part: &str) -> Option<String> {
        self.entry_name(part)
    }

    /// An entry's decompressed bytes, read through a handle of its own on the file.
    pub(crate) fn open_entry(
        &mut self,
        stored: &str,
    ) -> Result<Box<dyn BufRead + Send>, ReadError> {
        let (start, size, method) = {
            let entry = self.archive.by_name(stored)?;
            let start = entry.data_start().ok_or_else(|| {
                ReadError::Malformed(format!("{stored}: where its data starts is unknown"))
            })?;
            (start, entry.compressed_size(), entry.compression())
        };
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(start))?;
        let raw = BufReader::with_capacity(64 * 1024, file).take(size);
        Ok(match method {
            CompressionMethod::Stored => Box::new(raw),
            CompressionMethod::Deflated => Box::new(BufReader::with_capacity(
                64 * 1024,
                flate2::bufread::DeflateDecoder::new(raw),
            )),
            other => {
                return Err(ReadError::Malformed(format!(
                    "{stored} is compressed with {other}, which is not supported"
                )));
            }
        })
    }
}

/// Whether a custom number format shows a date, a duration or a number: calamine's
/// `detect_custom_number_format` (MIT, formats.rs), so both paths make the same cells dates.
pub(crate) fn custom_number_format(format: &str) -> NumberKind {
    let mut escaped = false;
    let mut is_quote = false;
    let mut brackets = 0u8;
    let mut prev = ' ';
    let mut hms = false;
    let mut ap = false;
    for s in format.chars() {
        match (s, escaped, is_quote, ap, brackets) {
            (_, true, ..) => escaped = false,
            // `\` escapes, `_` skips width, `*` fills: the next character is a literal.
            ('_' | '\\' | '*', ..) => escaped = true,
            ('"', _, true, _, _) => is_quote = false,
            (_, _, true, _, _) => (),
            ('"', _, _, _, _) => is_quote = true,
            // Only the first section (positive numbers) counts.
            (';', ..) => return NumberKind::Other,
            ('[', ..) => brackets += 1,
            (']', .., 1) if hms => return NumberKind::TimeDelta,
            (']', ..) => brackets = brackets.saturating_sub(1),
            ('a' | 'A', _, _, false, 0) => ap = true,
            ('p' | 'm' | '/' | 'P' | 'M', _, _, true, 0) => return NumberKind::DateTime,
            ('d' | 'm' | 'h' | 'y' | 's' | 'D' | 'M' | 'H' | 'Y' | 'S', _, _, false, 0) => {
                return NumberKind::DateTime;
            }
            _ => {
                if !(hms && s.eq_ignore_ascii_case(&prev)) {
                    hms = prev == '[' && matches!(s, 'm' | 'h' | 's' | 'M' | 'H' | 'S');
                }
            }
        }
        prev = s;
    }
    NumberKind::Other
}

/// Built-in number formats (ECMA-376 18.8.30) that show dates or durations: calamine's
/// `builtin_format_by_id`.
pub(crate) fn builtin_number_format(id: &str) -> NumberKind {
    match id {
        "14" | "15" | "16" | "17" | "18" | "19" | "20" | "21" | "22" | "45" | "47" => {
            NumberKind::DateTime
        }
        // East Asian built-in formats: dates and clock times, by locale.
        "27" | "28" | "29" | "30" | "31" | "32" | "33" | "34" | "35" | "36" | "50" | "51"
        | "52" | "53" | "54" | "55" | "56" | "57" | "58" => NumberKind::DateTime,
        "46" => NumberKind::TimeDelta,
        _ => NumberKind::Other,
    }
}
