//! Test helper: a tiny markup checker, enough to catch unbalanced tags, unquoted or unescaped
//! attributes, bad entities and non-finite numbers leaking into coordinates.

/// HTML elements that never have a closing tag.
const VOID: [&str; 6] = ["meta", "br", "hr", "img", "link", "input"];

/// Attributes that must hold numbers (or path data); "NaN"/"inf" there means a bug.
const NUMERIC_ATTRS: [&str; 17] = [
    "x",
    "y",
    "x1",
    "y1",
    "x2",
    "y2",
    "cx",
    "cy",
    "r",
    "width",
    "height",
    "d",
    "points",
    "viewBox",
    "transform",
    "font-size",
    "stroke-width",
];

/// Checks that `doc` is well formed: every tag closed in order (HTML void elements aside),
/// attributes quoted and escaped, entities known, one root element, no text outside it,
/// and no `NaN`/`inf` in numeric attributes.
pub(crate) fn check_markup(doc: &str) -> Result<(), String> {
    let mut stack: Vec<&str> = Vec::new();
    let mut roots = 0;
    let mut i = 0;
    while let Some(off) = doc[i..].find('<') {
        let text = &doc[i..i + off];
        check_text(text)?;
        if stack.is_empty() && !text.trim().is_empty() {
            return Err(format!("text outside the root element: {text:?}"));
        }
        let start = i + off;
        let rest = &doc[start..];
        if rest.starts_with("<!--") {
            let end = rest.find("-->").ok_or("unterminated comment")?;
            i = start + end + 3;
            continue;
        }
        if rest.starts_with("<!") || rest.starts_with("<?") {
            let end = rest.find('>').ok_or("unterminated declaration")?;
            i = start + end + 1;
            continue;
        }
        let end = tag_end(rest)?;
        let tag = &rest[1..end];
        i = start + end + 1;
        if let Some(name) = tag.strip_prefix('/') {
            let name = name.trim();
            match stack.pop() {
                Some(open) if open == name => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let body = tag.trim_end_matches('/');
        let name_end = body
            .find(|c: char| c.is_ascii_whitespace())
            .unwrap_or(body.len());
        let name = &body[..name_end];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':')
        {
            return Err(format!("bad tag name in <{tag}>"));
        }
        check_attributes(&body[name_end..])?;
        if stack.is_empty() {
            roots += 1;
            if roots > 1 {
                return Err(format!("second root element <{name}>"));
            }
        }
        if !self_closing && !VOID.contains(&name) {
            stack.push(name);
        }
    }
    let tail = &doc[i..];
    check_text(tail)?;
    if !tail.trim().is_empty() {
        return Err(format!("text after the root element: {tail:?}"));
    }
    if let Some(open) = stack.pop() {
        return Err(format!("<{open}> never closed"));
    }
    if roots != 1 {
        return Err("no root element".into());
    }
    Ok(())
}

/// Index of the `>` ending the tag that starts `rest`, skipping quoted attribute values.
fn tag_end(rest: &str) -> Result<usize, String> {
    let mut quote: Option<char> = None;
    for (j, c) in rest.char_indices().skip(1) {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '<') => return Err(format!("'<' inside a tag: {}", &rest[..j])),
            (None, '>') => return Ok(j),
            _ => {}
        }
    }
    Err("unterminated tag".into())
}

fn check_attributes(mut s: &str) -> Result<(), String> {
    loop {
        s = s.trim_start();
        if s.is_empty() {
            return Ok(());
        }
        let eq = s
            .find('=')
            .ok_or_else(|| format!("attribute without value: {s}"))?;
        let name = s[..eq].trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(format!("bad attribute name {name:?}"));
        }
        let after = &s[eq + 1..];
        let quote = after
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')
            .ok_or_else(|| format!("unquoted attribute {name}"))?;
        let close = after[1..]
            .find(quote)
            .ok_or_else(|| format!("unterminated attribute {name}"))?;
        let value = &after[1..1 + close];
        if value.contains('<') {
            return Err(format!("'<' in attribute {name}"));
        }
        check_text(value)?;
        if NUMERIC_ATTRS.contains(&name) {
            let lower = value.to_ascii_lowercase();
            if lower.contains("nan") || lower.contains("inf") {
                return Err(format!("non-finite number in {name}=\"{value}\""));
            }
        }
        s = &after[close + 2..];
    }
}

/// Text must not contain `<` and every `&` must start a known entity.
fn check_text(text: &str) -> Result<(), String> {
    if text.contains('<') {
        return Err(format!("'<' in text {text:?}"));
    }
    let mut rest = text;
    while let Some(p) = rest.find('&') {
        let after = &rest[p + 1..];
        let semi = after
            .find(';')
            .filter(|&n| n <= 10)
            .ok_or_else(|| format!("bare '&' in {text:?}"))?;
        let entity = &after[..semi];
        let ok = matches!(entity, "amp" | "lt" | "gt" | "quot" | "apos")
            || entity
                .strip_prefix("#x")
                .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
            || entity
                .strip_prefix('#')
                .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()));
        if !ok {
            return Err(format!("unknown entity &{entity};"));
        }
        rest = &after[semi + 1..];
    }
    Ok(())
}

#[test]
fn the_checker_itself_rejects_broken_markup() {
    assert!(check_markup("<svg><g></g></svg>").is_ok());
    assert!(
        check_markup("<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head></html>").is_ok()
    );
    assert!(check_markup("<svg><g></svg>").is_err());
    assert!(check_markup("<svg><text>a < b</text></svg>").is_err());
    assert!(check_markup("<svg><text>a & b</text></svg>").is_err());
    assert!(check_markup("<svg x=1></svg>").is_err());
    assert!(check_markup("<svg x=\"NaN\"></svg>").is_err());
    assert!(check_markup("<svg></svg><svg></svg>").is_err());
    assert!(check_markup("<svg>").is_err());
}
