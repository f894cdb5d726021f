//! A small page layout for the PDF: text measured with the embedded font's advances, wrapped
//! into lines, lines grouped into blocks, blocks placed on A4 pages. Pure geometry: the result is
//! a list of drawing operations per page, that `pdf::draw` hands to krilla.
//!
//! Every row is at most one line of text high, so that no row is taller than a page; a table row
//! whose cells wrap is several rows chained with `keep_with_next`.

use ttf_parser::Face;

use crate::render::RenderError;

/// The embedded font, compiled in: Liberation Sans 2.1.5 (SIL OFL 1.1, `assets/fonts`).
pub static REGULAR: &[u8] = include_bytes!("../../../assets/fonts/LiberationSans-Regular.ttf");
pub static BOLD: &[u8] = include_bytes!("../../../assets/fonts/LiberationSans-Bold.ttf");

/// The two weights, parsed for measuring.
pub fn fonts() -> Result<(Face<'static>, Face<'static>), RenderError> {
    Ok((
        Face::parse(REGULAR, 0).map_err(|_| RenderError::Font)?,
        Face::parse(BOLD, 0).map_err(|_| RenderError::Font)?,
    ))
}

/// A4 in PostScript points.
pub const PAGE_WIDTH: f32 = 595.276;
pub const PAGE_HEIGHT: f32 = 841.89;
/// 20 mm on each side.
pub const MARGIN_X: f32 = 56.69;
/// Where the body starts and must end: the banner and the page number live outside.
pub const CONTENT_TOP: f32 = 64.0;
pub const CONTENT_BOTTOM: f32 = PAGE_HEIGHT - 64.0;
pub const CONTENT_WIDTH: f32 = PAGE_WIDTH - 2.0 * MARGIN_X;
/// Line height as a multiple of the font size.
const LEADING: f32 = 1.3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    Regular,
    Bold,
}

/// An sRGB colour.
pub type Rgb = (u8, u8, u8);
pub const BLACK: Rgb = (17, 17, 17);
pub const GREY: Rgb = (80, 80, 80);
pub const RED: Rgb = (139, 0, 0);

/// One drawing operation; `y` is measured from the top (of the row while laying out, of the page
/// once placed).
#[derive(Debug, Clone)]
pub enum Op {
    Text {
        x: f32,
        /// The baseline.
        y: f32,
        size: f32,
        weight: Weight,
        colour: Rgb,
        text: String,
    },
    /// A horizontal rule from `x1` to `x2`.
    Rule {
        x1: f32,
        x2: f32,
        y: f32,
        width: f32,
        colour: Rgb,
    },
    /// A vertical bar from `y1` to `y2`.
    Bar {
        x: f32,
        y1: f32,
        y2: f32,
        width: f32,
        colour: Rgb,
    },
}

impl Op {
    fn shifted(mut self, dy: f32) -> Op {
        match &mut self {
            Op::Text { y, .. } | Op::Rule { y, .. } => *y += dy,
            Op::Bar { y1, y2, .. } => {
                *y1 += dy;
                *y2 += dy;
            }
        }
        self
    }
}

/// A horizontal slice of the flow, at most one line of text high.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub height: f32,
    pub ops: Vec<Op>,
    /// Never end a page after this row (a heading, the first lines of a table row).
    pub keep_with_next: bool,
    /// Pure space: dropped at the top of a page.
    pub spacer: bool,
}

impl Row {
    pub fn space(height: f32) -> Row {
        Row {
            height,
            spacer: true,
            ..Row::default()
        }
    }
}

/// The two weights of the embedded font, for measuring.
pub struct Metrics<'a> {
    regular: Face<'a>,
    bold: Face<'a>,
}

impl<'a> Metrics<'a> {
    pub fn new(regular: Face<'a>, bold: Face<'a>) -> Self {
        Metrics { regular, bold }
    }

    /// The advance of `text` at `size`, without kerning (kerning only narrows Latin text, so a
    /// line measured this way always fits).
    pub fn width(&self, text: &str, weight: Weight, size: f32) -> f32 {
        let face = match weight {
            Weight::Regular => &self.regular,
            Weight::Bold => &self.bold,
        };
        let units: u32 = text
            .chars()
            .map(|c| {
                let glyph = face.glyph_index(c).unwrap_or(ttf_parser::GlyphId(0));
                u32::from(face.glyph_hor_advance(glyph).unwrap_or(0))
            })
            .sum();
        units as f32 * size / f32::from(face.units_per_em())
    }

    /// `text` broken into lines no wider than `width`: at spaces, at line breaks of the text,
    /// and inside a word only when the word alone is wider than the line.
    pub fn wrap(&self, text: &str, weight: Weight, size: f32, width: f32) -> Vec<String> {
        let mut lines = Vec::new();
        for paragraph in text.split('\n') {
            let mut line = String::new();
            for word in paragraph.split([' ', '\t', '\r']).filter(|w| !w.is_empty()) {
                let candidate = if line.is_empty() {
                    word.to_owned()
                } else {
                    format!("{line} {word}")
                };
                if self.width(&candidate, weight, size) <= width {
                    line = candidate;
                    continue;
                }
                if !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                }
                // The word alone: cut it where it overflows.
                for c in word.chars() {
                    line.push(c);
                    if self.width(&line, weight, size) > width && line.chars().count() > 1 {
                        line.pop();
                        lines.push(std::mem::take(&mut line));
                        line.push(c);
                    }
                }
            }
            lines.push(line);
        }
        lines
    }

    /// A paragraph: one row per line, at `x`, `width` wide.
    pub fn paragraph(&self, text: &str, style: Style, x: f32, width: f32) -> Vec<Row> {
        self.wrap(text, style.weight, style.size, width)
            .into_iter()
            .map(|line| line_row(style, vec![(x, line, style)]))
            .collect()
    }

    /// « Label : value », the value wrapped beside the label.
    pub fn field(&self, label: &str, value: &str, style: Style, x: f32, width: f32) -> Vec<Row> {
        let label = format!("{label} : ");
        let bold = Style {
            weight: Weight::Bold,
            ..style
        };
        let indent = self.width(&label, Weight::Bold, style.size);
        let mut rows: Vec<Row> = self
            .wrap(value, style.weight, style.size, width - indent)
            .into_iter()
            .map(|line| line_row(style, vec![(x + indent, line, style)]))
            .collect();
        if let Some(first) = rows.first_mut() {
            first.ops.push(text_op(x, style.size, &label, bold));
        }
        rows
    }

    /// A table: a bold header, then one row per entry, each cell wrapped in its column, a thin
    /// rule under each entry. `columns` are fractions of `width`.
    pub fn table(
        &self,
        headers: &[&str],
        entries: &[Vec<&str>],
        columns: &[f32],
        style: Style,
        x: f32,
        width: f32,
    ) -> Vec<Row> {
        let header = Style {
            weight: Weight::Bold,
            ..style
        };
        let mut rows = self.table_row(headers, columns, header, x, width, 0.8);
        for entry in entries {
            rows.extend(self.table_row(entry, columns, style, x, width, 0.4));
        }
        rows
    }

    fn table_row(
        &self,
        cells: &[&str],
        columns: &[f32],
        style: Style,
        x: f32,
        width: f32,
        rule: f32,
    ) -> Vec<Row> {
        const GAP: f32 = 8.0;
        let mut lefts = Vec::with_capacity(columns.len());
        let mut left = x;
        let wrapped: Vec<Vec<String>> = cells
            .iter()
            .zip(columns)
            .map(|(cell, fraction)| {
                lefts.push(left);
                let w = fraction * width;
                left += w;
                self.wrap(cell, style.weight, style.size, w - GAP)
            })
            .collect();
        let height = wrapped.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let mut rows: Vec<Row> = (0..height)
            .map(|i| {
                let cells = wrapped
                    .iter()
                    .zip(&lefts)
                    .filter_map(|(lines, left)| lines.get(i).map(|l| (*left, l.clone(), style)))
                    .collect();
                let mut row = line_row(style, cells);
                row.keep_with_next = true;
                row
            })
            .collect();
        if let Some(last) = rows.last_mut() {
            last.keep_with_next = false;
            last.height += 3.0;
            last.ops.push(Op::Rule {
                x1: x,
                x2: x + width,
                y: last.height - 1.0,
                width: rule,
                colour: GREY,
            });
        }
        rows
    }
}

/// Size, weight and colour of a run of text.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub size: f32,
    pub weight: Weight,
    pub colour: Rgb,
}

fn text_op(x: f32, size: f32, text: &str, style: Style) -> Op {
    Op::Text {
        x,
        y: size * 1.05,
        size: style.size,
        weight: style.weight,
        colour: style.colour,
        text: text.to_owned(),
    }
}

/// One line of text made of runs at given abscissas.
fn line_row(style: Style, runs: Vec<(f32, String, Style)>) -> Row {
    Row {
        height: style.size * LEADING,
        ops: runs
            .into_iter()
            .filter(|(_, text, _)| !text.is_empty())
            .map(|(x, text, s)| text_op(x, style.size, &text, s))
            .collect(),
        ..Row::default()
    }
}

/// A run of rows that the pages should keep together when they can (an agenda item).
pub struct Block {
    pub rows: Vec<Row>,
    pub keep_together: bool,
}

/// The pages being filled.
pub struct Pages {
    pub pages: Vec<Vec<Op>>,
    y: f32,
}

impl Pages {
    pub fn new() -> Self {
        Pages {
            pages: vec![Vec::new()],
            y: CONTENT_TOP,
        }
    }

    fn at_top(&self) -> bool {
        self.y <= CONTENT_TOP
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.y = CONTENT_TOP;
    }

    /// Places a block: on the next page when it does not fit here but would on a page of its
    /// own; else row by row, never ending a page after a row to keep with the next.
    pub fn place(&mut self, block: Block) {
        let total: f32 = block.rows.iter().map(|r| r.height).sum();
        if block.keep_together
            && !self.at_top()
            && self.y + total > CONTENT_BOTTOM
            && total <= CONTENT_BOTTOM - CONTENT_TOP
        {
            self.new_page();
        }
        for (i, row) in block.rows.iter().enumerate() {
            // The row and those chained to it.
            let chain: f32 = block.rows[i..]
                .iter()
                .scan(true, |go, r| {
                    let take = *go;
                    *go = r.keep_with_next;
                    take.then_some(r.height)
                })
                .sum();
            let needed = if chain <= CONTENT_BOTTOM - CONTENT_TOP {
                chain
            } else {
                row.height
            };
            if !self.at_top() && self.y + needed > CONTENT_BOTTOM {
                self.new_page();
            }
            if row.spacer && self.at_top() {
                continue;
            }
            let y = self.y;
            if let Some(page) = self.pages.last_mut() {
                page.extend(row.ops.iter().cloned().map(|op| op.shifted(y)));
            }
            self.y += row.height;
        }
    }
}
