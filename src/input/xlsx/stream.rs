//! One `.xlsx`/`.xlsm` worksheet read as a stream of cells, decompressed and parsed as it is
//! read, so memory does not grow with the sheet: the shared-strings table (in bounded memory,
//! [`StringTable`]) and one cell at a time.
//!
//! A [`Package`] and a sheet's part come in; cells come out in the order the file holds them,
//! each as its position and the text a person sees ([`crate::input::xlsx`] decides that text, for
//! both paths). Values are decoded as calamine decodes them for the whole-sheet path (its
//! `XlsxCellReader`, whose shared-strings table is a `String` per entry, about 95 MB for a sheet
//! of unique notes at Excel's row limit): the same cell types, the same styles read as dates, the
//! same rich and inline text, so the two paths give the same rows.

use std::io::BufRead;

use calamine::{CellErrorType, DataRef, ExcelDateTime, ExcelDateTimeType};
use quick_xml::Reader;
use quick_xml::events::Event;
use quick_xml::name::QName;

use crate::input::xlsx::package::{NumberKind, Package, ReadError, attr, xml_reader};
use crate::input::xlsx::strings::StringTable;

/// The cells of one worksheet, in file order.
pub(crate) struct CellStream {
    xml: Reader<Box<dyn BufRead + Send>>,
    strings: StringTable,
    formats: Vec<NumberKind>,
    is_1904: bool,
    /// The top-left cell of the used range the sheet declares (`<dimension ref="B3:F9">`), when
    /// it declares one other than the placeholder `A1`.
    pub(crate) declared_start: Option<(u32, u32)>,
    /// Where a cell without an `r` attribute is: the row and the column after the last cell.
    row: u32,
    col: u32,
    buf: Vec<u8>,
    cell_buf: Vec<u8>,
    text_buf: Vec<u8>,
    /// A cell's text as the XML holds it, before it is read as a value.
    raw: String,
    /// The name of the element being read in a cell, to find its end.
    element: String,
}

/// What a cell's attributes say about reading its value.
#[derive(Debug, Clone, Copy)]
struct CellAttrs {
    /// Index of its style (`s`), which says whether a number is a date.
    style: Option<usize>,
    /// How its value is written (`t`).
    kind: CellType,
    /// No `t` at all: text that is not a number is then text, not an error.
    untyped: bool,
}

/// An element inside a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Element {
    /// `<v>`: the value (a formula's cached result).
    Value,
    /// `<is>`: an inline string.
    Inline,
    /// `<f>`: a formula, whose text is not read.
    Formula,
}

/// A cell's `t` attribute: how its value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CellType {
    Number,
    Shared,
    Bool,
    Error,
    Iso,
    Formula,
    Inline,
    Unknown,
}

impl CellStream {
    /// Reads the workbook's shared strings (keeping up to `in_memory` bytes of them in memory)
    /// and opens `part` at its first row; `None` when the part is not a worksheet (a chart sheet
    /// holds no cells).
    pub(crate) fn open(
        mut package: Package,
        part: &str,
        in_memory: usize,
    ) -> Result<Option<CellStream>, ReadError> {
        let mut strings = StringTable::new(in_memory);
        if let Some(stored) = package.shared_strings() {
            read_shared_strings(package.open_entry(&stored)?, &mut strings)?;
        }
        strings.finish()?;
        let stored = package
            .sheet_part(part)
            .ok_or_else(|| ReadError::Malformed(format!("the sheet's part {part} is missing")))?;
        let mut xml = xml_reader(package.open_entry(&stored)?);
        let mut buf = Vec::new();
        let mut declared_start = None;
        loop {
            buf.clear();
            match xml.read_event_into(&mut buf)? {
                Event::Start(e) if e.local_name().as_ref() == "dimension" => {
                    if let Some(range) = attr(&e, "ref")? {
                        let first = range.split(':').next().unwrap_or_default();
                        let start = cell_position(first)?;
                        declared_start = (start != (0, 0) || range.contains(':')).then_some(start);
                    }
                }
                Event::Start(e) if e.local_name().as_ref() == "sheetData" => break,
                Event::Eof => return Ok(None),
                _ => {}
            }
        }
        Ok(Some(CellStream {
            xml,
            strings,
            formats: std::mem::take(&mut package.formats),
            is_1904: package.is_1904,
            declared_start,
            row: 0,
            col: 0,
            buf,
            cell_buf: Vec::new(),
            text_buf: Vec::new(),
            raw: String::new(),
            element: String::new(),
        }))
    }

    /// The next cell's position (0-based row and column), its text written to `text`; `None`
    /// after the last.
    pub(crate) fn next_cell(&mut self, text: &mut String) -> Result<Option<(u32, u32)>, ReadError> {
        loop {
            self.buf.clear();
            match self.xml.read_event_into(&mut self.buf)? {
                Event::Start(e) if e.local_name().as_ref() == "row" => {
                    if let Some(r) = attr(&e, "r")? {
                        self.row = number(&r)?
                            .checked_sub(1)
                            .ok_or_else(|| malformed("a row numbered 0"))?;
                    }
                }
                Event::End(e) if e.local_name().as_ref() == "row" => {
                    self.row = self.row.saturating_add(1);
                    self.col = 0;
                }
                Event::Start(e) if e.local_name().as_ref() == "c" => {
                    // One pass over the attributes: this runs for every cell of the sheet.
                    let mut pos = None;
                    let mut style = None;
                    let mut kind = CellType::Number;
                    let mut untyped = true;
                    for a in e.attributes().with_checks(false) {
                        let a = a.map_err(ReadError::from)?;
                        match a.key.local_name().as_ref() {
                            "r" => pos = Some(cell_position(&a.value)?),
                            "s" => style = Some(a.value.parse::<usize>().unwrap_or(0)),
                            "t" => {
                                untyped = false;
                                kind = match a.value.as_ref() {
                                    "n" => CellType::Number,
                                    "s" => CellType::Shared,
                                    "b" => CellType::Bool,
                                    "e" => CellType::Error,
                                    "d" => CellType::Iso,
                                    "str" => CellType::Formula,
                                    "inlineStr" | "is" => CellType::Inline,
                                    _ => CellType::Unknown,
                                };
                            }
                            _ => {}
                        }
                    }
                    let pos = match pos {
                        Some(pos) => {
                            self.col = pos.1;
                            pos
                        }
                        None => (self.row, self.col),
                    };
                    text.clear();
                    self.read_cell(
                        CellAttrs {
                            style,
                            kind,
                            untyped,
                        },
                        text,
                    )?;
                    self.col = self.col.saturating_add(1);
                    return Ok(Some(pos));
                }
                Event::End(e) if e.local_name().as_ref() == "sheetData" => return Ok(None),
                Event::Eof => return Err(malformed("the sheet ends inside its data")),
                _ => {}
            }
        }
    }

    /// Reads a cell's elements up to `</c>`; each `<v>`, `<is>` or `<f>` replaces the value
    /// read before it, as in calamine.
    fn read_cell(&mut self, attrs: CellAttrs, text: &mut String) -> Result<(), ReadError> {
        loop {
            self.cell_buf.clear();
            let element = match self.xml.read_event_into(&mut self.cell_buf)? {
                Event::Start(e) => {
                    // The element's name is kept to find its end tag; the event itself borrows
                    // the buffer the next reads reuse.
                    self.element.clear();
                    self.element.push_str(e.name().as_ref());
                    match e.local_name().as_ref() {
                        "v" => Element::Value,
                        "is" => Element::Inline,
                        "f" => Element::Formula,
                        other => {
                            return Err(malformed(&format!("unexpected <{other}> in a cell")));
                        }
                    }
                }
                Event::End(e) if e.local_name().as_ref() == "c" => return Ok(()),
                Event::Eof => return Err(malformed("the sheet ends inside a cell")),
                _ => continue,
            };
            text.clear();
            let name = std::mem::take(&mut self.element);
            let read = self.read_element(element, &name, attrs, text);
            self.element = name;
            read?;
        }
    }

    fn read_element(
        &mut self,
        element: Element,
        name: &str,
        attrs: CellAttrs,
        text: &mut String,
    ) -> Result<(), ReadError> {
        let end = QName(name);
        let kind = attrs.kind;
        match element {
            Element::Inline => read_string(&mut self.xml, end, &mut self.text_buf, text)?,
            Element::Formula => self.skip(end)?,
            Element::Value if kind == CellType::Inline => self.skip(end)?,
            Element::Value
                if matches!(
                    kind,
                    CellType::Number | CellType::Shared | CellType::Bool | CellType::Error
                ) =>
            {
                // Plain ASCII in these types: one text event.
                self.raw.clear();
                self.text_buf.clear();
                match self.xml.read_event_into(&mut self.text_buf)? {
                    Event::Text(t) => self.raw.push_str(&t.xml10_content()),
                    Event::End(e) if e.name() == end => return Ok(()),
                    Event::Eof => return Err(malformed("the sheet ends inside a value")),
                    _ => {}
                }
                self.skip(end)?;
                self.value_text(attrs, text)?;
            }
            Element::Value => {
                self.raw.clear();
                loop {
                    self.text_buf.clear();
                    match self.xml.read_event_into(&mut self.text_buf)? {
                        Event::Text(t) => self.raw.push_str(&t.xml10_content()),
                        Event::GeneralRef(r) => entity(&r, &mut self.raw)?,
                        Event::End(e) if e.name() == end => break,
                        Event::Eof => return Err(malformed("the sheet ends inside a value")),
                        _ => {}
                    }
                }
                self.value_text(attrs, text)?;
            }
        }
        Ok(())
    }

    fn skip(&mut self, end: QName<'_>) -> Result<(), ReadError> {
        self.text_buf.clear();
        self.xml.read_to_end_into(end, &mut self.text_buf)?;
        Ok(())
    }

    /// The text of the value written in `self.raw`, as calamine's `read_v` reads it.
    fn value_text(&mut self, attrs: CellAttrs, text: &mut String) -> Result<(), ReadError> {
        let raw = self.raw.as_str();
        let value = match attrs.kind {
            CellType::Shared => {
                if raw.is_empty() {
                    return Ok(());
                }
                let index = raw.parse::<usize>().unwrap_or(0);
                text.push_str(self.strings.get(index)?);
                return Ok(());
            }
            CellType::Bool => match raw.trim() {
                "" => DataRef::Empty,
                "0" => DataRef::Bool(false),
                "1" => DataRef::Bool(true),
                v if v.eq_ignore_ascii_case("false") => DataRef::Bool(false),
                v if v.eq_ignore_ascii_case("true") => DataRef::Bool(true),
                _ => return Err(malformed(&format!("{raw:?} is not a boolean cell value"))),
            },
            CellType::Iso => DataRef::DateTimeIso(raw.to_string()),
            CellType::Error => DataRef::Error(
                raw.parse::<CellErrorType>()
                    .map_err(|e| malformed(&format!("{raw:?} is not a cell error: {e}")))?,
            ),
            CellType::Formula => {
                text.push_str(&unescape_xml(raw));
                return Ok(());
            }
            CellType::Number => {
                if raw.is_empty() {
                    return Ok(());
                }
                match raw.parse::<f64>() {
                    Ok(n) => {
                        let format = match attrs.style {
                            Some(s) => self.formats.get(s).copied(),
                            None => Some(NumberKind::Other),
                        };
                        number_value(n, format, self.is_1904)
                    }
                    // With no type at all, text that is not a number is text.
                    Err(_) if attrs.untyped => {
                        text.push_str(raw);
                        return Ok(());
                    }
                    Err(e) => return Err(malformed(&format!("{raw:?} is not a number: {e}"))),
                }
            }
            CellType::Inline | CellType::Unknown => {
                return Err(malformed("a cell of an unknown type"));
            }
        };
        crate::input::xlsx::push_cell_text(&value, text);
        Ok(())
    }
}

/// A number cell as calamine's `format_excel_f64_ref` makes it: a date where its style says so.
fn number_value(n: f64, format: Option<NumberKind>, is_1904: bool) -> DataRef<'static> {
    match format {
        Some(NumberKind::DateTime) => {
            DataRef::DateTime(ExcelDateTime::new(n, ExcelDateTimeType::DateTime, is_1904))
        }
        Some(NumberKind::TimeDelta) => {
            DataRef::DateTime(ExcelDateTime::new(n, ExcelDateTimeType::TimeDelta, is_1904))
        }
        _ => DataRef::Float(n),
    }
}

/// Reads `sharedStrings.xml` into `table`, one entry per `<si>`.
fn read_shared_strings(
    read: Box<dyn BufRead + Send>,
    table: &mut StringTable,
) -> Result<(), ReadError> {
    let mut xml = xml_reader(read);
    let mut buf = Vec::new();
    let mut text_buf = Vec::new();
    let mut text = String::new();
    loop {
        buf.clear();
        match xml.read_event_into(&mut buf)? {
            Event::Start(e) if e.local_name().as_ref() == "si" => {
                let e = e.into_owned();
                text.clear();
                read_string(&mut xml, e.name(), &mut text_buf, &mut text)?;
                table.push(&text)?;
            }
            Event::End(e) if e.local_name().as_ref() == "sst" => return Ok(()),
            Event::Eof => return Ok(()),
            _ => {}
        }
    }
}

/// A plain or rich-text string (`<si>`, `<is>`) up to its closing tag, into `out`, as calamine's
/// `read_string_with_bufs`: the `<t>`s joined, phonetic runs (`<rPh>`) left out, white space at
/// either end trimmed unless `xml:space="preserve"`, `_xHHHH_` escapes decoded.
fn read_string<R: BufRead>(
    xml: &mut Reader<R>,
    closing: QName<'_>,
    buf: &mut Vec<u8>,
    out: &mut String,
) -> Result<(), ReadError> {
    let mut phonetic = false;
    let mut value = String::new();
    loop {
        buf.clear();
        match xml.read_event_into(buf)? {
            Event::Start(e) if e.local_name().as_ref() == "rPh" => phonetic = true,
            Event::End(e) if e.name() == closing => return Ok(()),
            Event::End(e) if e.local_name().as_ref() == "rPh" => phonetic = false,
            Event::Start(e) if e.local_name().as_ref() == "t" && !phonetic => {
                let e = e.into_owned();
                let preserve = attr(&e, "space")?.is_some_and(|v| v.as_ref() == "preserve");
                value.clear();
                loop {
                    buf.clear();
                    match xml.read_event_into(buf)? {
                        Event::Text(t) => value.push_str(&t.xml10_content()),
                        Event::CData(t) => value.push_str(&t.xml10_content()),
                        Event::GeneralRef(r) => entity(&r, &mut value)?,
                        Event::End(end) if end.name() == e.name() => break,
                        Event::Eof => return Err(malformed("a string ends inside its text")),
                        _ => {}
                    }
                }
                let kept = if preserve {
                    value.as_str()
                } else {
                    // ASCII white space only: a no-break space at either end is kept.
                    value.trim_matches([' ', '\t', '\r', '\n'])
                };
                out.push_str(&unescape_xml(kept));
            }
            Event::Eof => return Err(malformed("a string is never closed")),
            _ => {}
        }
    }
}

/// An entity reference (`&amp;`, `&#10;`) as text.
fn entity(r: &quick_xml::events::BytesRef<'_>, out: &mut String) -> Result<(), ReadError> {
    if let Some(text) = quick_xml::escape::resolve_xml_entity(r.as_ref()) {
        out.push_str(text);
        return Ok(());
    }
    if let Some(c) = r.resolve_char_ref()? {
        out.push(c);
        return Ok(());
    }
    Err(malformed(&format!("unknown entity &{};", r.as_ref())))
}

/// Decodes the `_xHHHH_` escapes spreadsheet files use for characters XML cannot hold (a UTF-16
/// unit each; a pair of them for a character past U+FFFF), as calamine's `unescape_xml` does.
fn unescape_xml(original: &str) -> std::borrow::Cow<'_, str> {
    let Some((mut index, mut unit)) = find_escape(original, 0) else {
        return std::borrow::Cow::Borrowed(original);
    };
    let mut out = String::with_capacity(original.len());
    let mut copied = 0;
    loop {
        out.push_str(&original[copied..index]);
        index += ESCAPE_LENGTH;
        match unit {
            0xD800..=0xDBFF => match escape_at(original, index) {
                Some(low @ 0xDC00..=0xDFFF) => {
                    let code =
                        0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
                    out.push(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
                    index += ESCAPE_LENGTH;
                }
                _ => out.push(char::REPLACEMENT_CHARACTER),
            },
            0xDC00..=0xDFFF => out.push(char::REPLACEMENT_CHARACTER),
            _ => out.push(char::from_u32(u32::from(unit)).unwrap_or(char::REPLACEMENT_CHARACTER)),
        }
        copied = index;
        match find_escape(original, index) {
            Some(next) => (index, unit) = next,
            None => break,
        }
    }
    out.push_str(&original[copied..]);
    std::borrow::Cow::Owned(out)
}

/// Length of `_xHHHH_`.
const ESCAPE_LENGTH: usize = 7;

fn find_escape(text: &str, mut start: usize) -> Option<(usize, u16)> {
    while let Some(offset) = text.get(start..)?.find('_') {
        let index = start + offset;
        if let Some(unit) = escape_at(text, index) {
            return Some((index, unit));
        }
        start = index + 1;
    }
    None
}

fn escape_at(text: &str, index: usize) -> Option<u16> {
    let bytes = text.as_bytes().get(index..index + ESCAPE_LENGTH)?;
    if bytes[0] != b'_' || bytes[1] != b'x' || bytes[6] != b'_' {
        return None;
    }
    let hex = std::str::from_utf8(&bytes[2..6]).ok()?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(hex, 16).ok()
}

/// A whole number attribute (`r="12"`).
fn number(text: &str) -> Result<u32, ReadError> {
    text.parse()
        .map_err(|_| malformed(&format!("{text:?} is not a row number")))
}

/// A cell reference (`B12`) as a 0-based (row, column).
pub(crate) fn cell_position(text: &str) -> Result<(u32, u32), ReadError> {
    let bad = || malformed(&format!("{text:?} is not a cell reference"));
    let letters = text.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
    let mut col: u32 = 0;
    for b in text[..letters].bytes() {
        col = col
            .checked_mul(26)
            .and_then(|c| c.checked_add(u32::from(b.to_ascii_uppercase() - b'A') + 1))
            .ok_or_else(bad)?;
    }
    let row = number(&text[letters..])?.checked_sub(1).ok_or_else(bad)?;
    Ok((row, col.saturating_sub(1)))
}

fn malformed(message: &str) -> ReadError {
    ReadError::Malformed(message.to_string())
}
