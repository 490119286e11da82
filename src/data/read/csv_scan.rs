//! Locating what makes a CSV table file unreadable: the 1-based line (and data row and
//! column) of a ragged row, an unclosed quote or invalid UTF-8.
//!
//! polars' reader says *that* a file is broken (`found more fields than defined in
//! 'Schema'`, `invalid utf-8 sequence`) without saying where, and fills the missing
//! fields of a short row with nulls without a word. This scanner reads the file again,
//! as RFC 4180 CSV (`,`, `"` quotes with `""` escapes, `\n` or `\r\n` line ends, blank
//! lines skipped as polars skips them), only when polars failed or when a short row is
//! possible (see [`super::cells::read_file`]), so the fast path stays polars alone.
//!
//! Hand-written rather than the `csv` crate's reader: that reader takes a quote left
//! open as a field running to the end of the file (no error), and the line where the
//! quote opened is what a person needs.

/// Where and why a CSV file does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CsvFault {
    /// 1-based physical line where the faulty record (or the bad byte) is.
    pub line: usize,
    /// 1-based data row (the header excluded), as in the loader's other messages;
    /// `None` for the header.
    pub row: Option<usize>,
    /// The column's header name, when the fault is in a known column.
    pub column: Option<String>,
    pub message: String,
}

/// The first fault of `bytes` read as CSV with a header, or `None` when every record
/// has the header's number of fields, every quote is closed and the text is UTF-8.
pub(crate) fn find_fault(bytes: &[u8]) -> Option<CsvFault> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let bad_utf8 = std::str::from_utf8(bytes).err().map(|e| e.valid_up_to());
    let line_of = |pos: usize| 1 + bytes[..pos].iter().filter(|&&b| b == b'\n').count();
    let mut header: Option<Vec<String>> = None;
    let mut pos = 0;
    let mut line = 1;
    let mut row = 0;
    while pos < bytes.len() {
        // A blank line holds no record.
        if bytes[pos] == b'\n' || (bytes[pos] == b'\r' && bytes.get(pos + 1) == Some(&b'\n')) {
            pos += if bytes[pos] == b'\r' { 2 } else { 1 };
            line += 1;
            continue;
        }
        let record_line = line;
        let record_row = header.as_ref().map(|_| row + 1);
        let column = |i: usize| header.as_ref().and_then(|h| h.get(i).cloned());
        let mut fields: Vec<String> = Vec::new();
        let mut count = 0;
        loop {
            let start = pos;
            if bytes.get(pos) == Some(&b'"') {
                let opened = line;
                pos += 1;
                loop {
                    match bytes[pos..].iter().position(|&b| b == b'"' || b == b'\n') {
                        None => {
                            return Some(CsvFault {
                                line: opened,
                                row: record_row,
                                column: column(count),
                                message: "a quoted field opened on this line is never closed"
                                    .into(),
                            })
                        }
                        Some(k) if bytes[pos + k] == b'\n' => {
                            line += 1;
                            pos += k + 1;
                        }
                        Some(k) if bytes.get(pos + k + 1) == Some(&b'"') => pos += k + 2,
                        Some(k) => {
                            pos += k + 1;
                            break;
                        }
                    }
                }
            }
            // The rest of the field (all of it when unquoted).
            while pos < bytes.len() && bytes[pos] != b',' && bytes[pos] != b'\n' {
                pos += 1;
            }
            if let Some(at) = bad_utf8.filter(|&at| (start..pos).contains(&at)) {
                return Some(CsvFault {
                    line: line_of(at),
                    row: record_row,
                    column: column(count),
                    message: format!(
                        "invalid UTF-8 (byte 0x{:02x} at byte offset {at}); save the file as UTF-8",
                        bytes[at]
                    ),
                });
            }
            if header.is_none() {
                let raw = &bytes[start..pos];
                let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
                let text = String::from_utf8_lossy(raw);
                fields.push(text.trim_matches('"').to_string());
            }
            count += 1;
            match bytes.get(pos) {
                Some(b',') => pos += 1,
                Some(_) => {
                    pos += 1;
                    line += 1;
                    break;
                }
                None => break,
            }
        }
        match &header {
            None => header = Some(fields),
            Some(h) => {
                row += 1;
                if count != h.len() {
                    let (column, what) = if count < h.len() {
                        (Some(h[count].clone()), "missing from here on")
                    } else {
                        (None, "one too many or more")
                    };
                    return Some(CsvFault {
                        line: record_line,
                        row: record_row,
                        column,
                        message: format!(
                            "{count} field{} where the header has {} ({what}); a ragged row, an unquoted `,` or a stray line break?",
                            if count == 1 { "" } else { "s" },
                            h.len()
                        ),
                    });
                }
            }
        }
    }
    None
}

/// Whether `bytes` holds no quote and every non-blank line has the header's number of
/// commas: then no record is short or long (a record is a line). `false` says nothing
/// (quotes, or a ragged line): [`find_fault`] decides. A count of one byte per line, many
/// times faster than [`find_fault`]'s tokenizer.
pub(crate) fn every_line_complete(bytes: &[u8]) -> bool {
    if bytes.contains(&b'"') {
        return false;
    }
    let commas = |line: &[u8]| line.iter().filter(|&&b| b == b',').count();
    let mut lines = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty() && *l != b"\r");
    let Some(header) = lines.next() else {
        return true;
    };
    let want = commas(header);
    lines.all(|l| commas(l) == want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quick_check_clears_only_files_without_quotes_whose_lines_are_complete() {
        assert!(every_line_complete(b"id,at,kind\r\na,1,\n\nb,2,x\n"));
        assert!(every_line_complete(b""));
        assert!(!every_line_complete(b"id,at,kind\na,1\n"));
        assert!(!every_line_complete(b"id,at\na,1,2\n"));
        assert!(!every_line_complete(b"id,at\na,\"1\"\n"));
        // Every file it clears has no fault.
        for text in [&b"id,at,kind\na,1,\nb,2,x\n"[..], b"id\na\n\nb"] {
            assert!(every_line_complete(text));
            assert_eq!(find_fault(text), None);
        }
    }

    fn fault(text: &[u8]) -> (usize, Option<usize>, Option<String>, String) {
        let f = find_fault(text).expect("a fault");
        (f.line, f.row, f.column, f.message)
    }

    #[test]
    fn a_well_formed_file_with_quotes_crlf_and_blank_lines_has_no_fault() {
        let text = b"id,note\r\na,\"x, \"\"y\"\"\"\r\n\r\nb,\"two\nlines\"\nc,\n";
        assert_eq!(find_fault(text), None);
        assert_eq!(find_fault(b"\xEF\xBB\xBFid,at\na,b"), None);
        assert_eq!(find_fault(b""), None);
    }

    #[test]
    fn a_short_row_names_its_line_row_and_first_missing_column() {
        let text = b"customer_id,at,kind\na,2024-01-01,x\n\nb,2024-01-02\n";
        assert_eq!(
            fault(text),
            (
                4,
                Some(2),
                Some("kind".into()),
                "2 fields where the header has 3 (missing from here on); a ragged row, an unquoted `,` or a stray line break?".into()
            )
        );
    }

    #[test]
    fn a_long_row_names_its_line_and_row() {
        let text = b"customer_id,at\na,2024-01-01\nb,2024-01-02,extra\n";
        let (line, row, column, message) = fault(text);
        assert_eq!((line, row, column), (3, Some(2), None));
        assert!(message.starts_with("3 fields where the header has 2 (one too many or more)"));
    }

    #[test]
    fn a_line_break_inside_quotes_counts_lines_but_not_rows() {
        let text = b"id,note\na,\"one\ntwo\"\nb,x,y\n";
        assert_eq!(fault(text).0, 4);
        assert_eq!(fault(text).1, Some(2));
    }

    #[test]
    fn an_unclosed_quote_names_the_line_where_it_opened() {
        let text = b"customer_id,at\na,2024-01-01\nb,\"2024-01-02\nc,2024-01-03\n";
        assert_eq!(
            fault(text),
            (
                3,
                Some(2),
                Some("at".into()),
                "a quoted field opened on this line is never closed".into()
            )
        );
    }

    #[test]
    fn invalid_utf8_names_the_line_row_and_column_of_the_bad_byte() {
        let text = b"customer_id,plan\na,pro\nb,caf\xe9\n";
        assert_eq!(
            fault(text),
            (
                3,
                Some(2),
                Some("plan".into()),
                "invalid UTF-8 (byte 0xe9 at byte offset 28); save the file as UTF-8".into()
            )
        );
        let (line, row, column, _) = fault(b"id,pl\xffan\na,b\n");
        assert_eq!((line, row, column), (1, None, None));
    }
}
