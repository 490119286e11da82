//! Self-contained HTML reports with inline SVG charts (no scripts, no CDN, open offline).
