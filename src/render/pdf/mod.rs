//! The compte rendu as an A4 PDF, drawn with krilla: Liberation Sans embedded (subset, with a
//! ToUnicode map, so the text can be searched, copied and extracted), the confidentiality banner
//! at the top and the bottom of every page with « page n / N », each agenda item kept on one page
//! when it fits. The same input gives the same bytes: no clock, the creation date is the
//! document's `generated_at`, krilla derives the document's identifiers from its content.

pub(super) mod layout;

use chrono::{DateTime, Datelike, Timelike, Utc};
use krilla::Document;
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point};
use krilla::metadata::{DateTime as PdfDateTime, Metadata};
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::surface::Surface;
use krilla::text::{Font, TextDirection};

use self::layout::{
    BLACK, Block, CONTENT_WIDTH, GREY, MARGIN_X, Metrics, Op, PAGE_HEIGHT, PAGE_WIDTH, Pages, RED,
    Row, Style, Weight,
};
use super::RenderError;
use super::view::{self, ItemView, View};

use self::layout::{BOLD, REGULAR};

const BODY: Style = Style {
    size: 10.0,
    weight: Weight::Regular,
    colour: BLACK,
};
const SMALL: Style = Style {
    size: 8.5,
    weight: Weight::Regular,
    colour: GREY,
};
const TITLE: Style = Style {
    size: 15.0,
    weight: Weight::Bold,
    colour: BLACK,
};
const SECTION: Style = Style {
    size: 12.5,
    weight: Weight::Bold,
    colour: BLACK,
};
const ITEM: Style = Style {
    size: 11.5,
    weight: Weight::Bold,
    colour: BLACK,
};
const BANNER: Style = Style {
    size: 8.0,
    weight: Weight::Bold,
    colour: RED,
};

pub fn render(v: &View, generated_at: DateTime<Utc>) -> Result<Vec<u8>, RenderError> {
    let (regular_face, bold_face) = layout::fonts()?;
    let metrics = Metrics::new(regular_face, bold_face);
    let pages = lay_out(v, &metrics);
    let regular = Font::new(REGULAR.into(), 0).ok_or(RenderError::Font)?;
    let bold = Font::new(BOLD.into(), 0).ok_or(RenderError::Font)?;

    let mut document = Document::new();
    document.set_metadata(
        Metadata::new()
            .title(v.title.clone())
            .language("fr".to_owned())
            .creator("cellule".to_owned())
            .creation_date(pdf_date(generated_at)),
    );
    let count = pages.len();
    let settings = PageSettings::from_wh(PAGE_WIDTH, PAGE_HEIGHT)
        .ok_or_else(|| RenderError::Pdf("page size".to_owned()))?;
    for (n, ops) in pages.iter().enumerate() {
        let mut page = document.start_page_with(settings.clone());
        let mut surface = page.surface();
        let fonts = (&regular, &bold);
        for op in ops.iter().chain(&furniture(&metrics, n + 1, count)) {
            draw(&mut surface, fonts, op);
        }
        surface.finish();
        page.finish();
    }
    document
        .finish()
        .map_err(|e| RenderError::Pdf(e.to_string()))
}

/// The flow of the document, on pages.
fn lay_out(v: &View, m: &Metrics) -> Vec<Vec<Op>> {
    let x = MARGIN_X;
    let w = CONTENT_WIDTH;
    let mut pages = Pages::new();

    let mut head = m.paragraph(&v.cellule, Style { size: 11.0, ..BODY }, x, w);
    head.extend(m.paragraph(&v.heading, TITLE, x, w));
    head.push(Row::space(4.0));
    head.extend(m.field("Lieu", &v.location, BODY, x, w));
    head.extend(m.field("Durée prévue", &v.duration, BODY, x, w));
    let state = if v.draft {
        Style {
            weight: Weight::Bold,
            colour: RED,
            ..BODY
        }
    } else {
        BODY
    };
    head.extend(m.field("État", &v.state, state, x, w));
    head.push(Row::space(4.0));
    head.extend(m.paragraph(&v.reader, SMALL, x, w));
    head.extend(m.paragraph(&v.generated, SMALL, x, w));
    pages.place(Block {
        rows: head,
        keep_together: true,
    });

    let mut presence = section(m, "Présences");
    if v.attendance.is_empty() {
        presence.extend(m.paragraph("Aucune présence enregistrée.", BODY, x, w));
    } else {
        let entries: Vec<Vec<&str>> = v
            .attendance
            .iter()
            .map(|a| vec![a.organisation.as_str(), a.participant.as_str(), a.status])
            .collect();
        presence.extend(m.table(
            &view::ATTENDANCE_HEADERS,
            &entries,
            &[0.45, 0.35, 0.2],
            BODY,
            x,
            w,
        ));
    }
    pages.place(Block {
        rows: presence,
        keep_together: false,
    });

    let mut heading = section(m, "Situations examinées");
    if v.items.is_empty() {
        heading.extend(m.paragraph(
            "Aucune situation à l'ordre du jour de cet exemplaire.",
            BODY,
            x,
            w,
        ));
    }
    pages.place(Block {
        rows: heading,
        keep_together: false,
    });
    for item in &v.items {
        pages.place(Block {
            rows: item_rows(m, item),
            keep_together: true,
        });
    }
    pages.pages
}

fn section(m: &Metrics, title: &str) -> Vec<Row> {
    let mut rows = vec![Row::space(10.0)];
    rows.extend(m.paragraph(title, SECTION, MARGIN_X, CONTENT_WIDTH));
    if let Some(last) = rows.last_mut() {
        last.height += 3.0;
        last.ops.push(Op::Rule {
            x1: MARGIN_X,
            x2: MARGIN_X + CONTENT_WIDTH,
            y: last.height - 1.5,
            width: 0.8,
            colour: GREY,
        });
        last.keep_with_next = true;
    }
    rows
}

/// One agenda item: heading, kind, decision, actions, text, record.
fn item_rows(m: &Metrics, item: &ItemView) -> Vec<Row> {
    let x = MARGIN_X;
    let w = CONTENT_WIDTH;
    let mut rows = vec![Row::space(8.0)];
    let mut heading = m.paragraph(&item.heading, ITEM, x, w);
    for row in &mut heading {
        row.keep_with_next = true;
    }
    rows.extend(heading);
    rows.extend(m.field("Type", item.kind, BODY, x, w));
    let Some(d) = &item.decision else {
        rows.extend(m.paragraph(&format!("{}.", view::NO_DECISION), BODY, x, w));
        return rows;
    };
    rows.extend(m.field("Décision", d.outcome, BODY, x, w));
    if let Some(who) = &d.interlocutor {
        rows.extend(m.field("Interlocuteur", who, BODY, x, w));
    }
    if let Some(date) = &d.follow_up {
        rows.extend(m.field("Prochain examen", date, BODY, x, w));
    }
    rows.push(Row::space(3.0));
    if d.actions.is_empty() {
        rows.extend(m.paragraph(&format!("{}.", view::NO_ACTION), BODY, x, w));
    } else {
        let entries: Vec<Vec<&str>> = d
            .actions
            .iter()
            .map(|a| vec![a.what.as_str(), a.owner.as_str(), a.due.as_str()])
            .collect();
        rows.extend(m.table(
            &view::ACTION_HEADERS,
            &entries,
            &[0.5, 0.3, 0.2],
            BODY,
            x,
            w,
        ));
    }
    if let Some(t) = &d.text {
        const INDENT: f32 = 10.0;
        rows.push(Row::space(4.0));
        let mut text = m.paragraph(
            t.audience,
            Style {
                size: 9.0,
                weight: Weight::Bold,
                colour: BLACK,
            },
            x + INDENT,
            w - INDENT,
        );
        text.extend(m.paragraph(&t.text, BODY, x + INDENT, w - INDENT));
        // A bar in the margin of the text, as in the HTML.
        for row in &mut text {
            row.ops.push(Op::Bar {
                x: x + 2.0,
                y1: 0.0,
                y2: row.height,
                width: 1.5,
                colour: GREY,
            });
        }
        rows.extend(text);
    }
    rows.push(Row::space(3.0));
    rows.extend(m.paragraph(&format!("{} ({})", d.recorded, d.version), SMALL, x, w));
    rows
}

/// What every page carries outside the flow: the banner at the top and at the bottom, and
/// « page n / N ».
fn furniture(m: &Metrics, n: usize, count: usize) -> Vec<Op> {
    let banner_width = m.width(view::BANNER, Weight::Bold, BANNER.size);
    let number = format!("page {n} / {count}");
    let number_width = m.width(&number, Weight::Regular, SMALL.size);
    let right = MARGIN_X + CONTENT_WIDTH;
    let text = |x: f32, y: f32, style: Style, text: &str| Op::Text {
        x,
        y,
        size: style.size,
        weight: style.weight,
        colour: style.colour,
        text: text.to_owned(),
    };
    vec![
        text(
            (PAGE_WIDTH - banner_width) / 2.0,
            36.0,
            BANNER,
            view::BANNER,
        ),
        Op::Rule {
            x1: MARGIN_X,
            x2: right,
            y: 44.0,
            width: 0.8,
            colour: RED,
        },
        Op::Rule {
            x1: MARGIN_X,
            x2: right,
            y: PAGE_HEIGHT - 50.0,
            width: 0.8,
            colour: RED,
        },
        text(MARGIN_X, PAGE_HEIGHT - 38.0, BANNER, view::BANNER),
        text(right - number_width, PAGE_HEIGHT - 38.0, SMALL, &number),
    ]
}

fn colour((r, g, b): layout::Rgb) -> krilla::paint::Paint {
    rgb::Color::new(r, g, b).into()
}

fn draw(surface: &mut Surface<'_>, (regular, bold): (&Font, &Font), op: &Op) {
    match op {
        Op::Text {
            x,
            y,
            size,
            weight,
            colour: c,
            text,
        } => {
            let font = match weight {
                Weight::Regular => regular,
                Weight::Bold => bold,
            };
            surface.set_stroke(None);
            surface.set_fill(Some(Fill {
                paint: colour(*c),
                ..Fill::default()
            }));
            surface.draw_text(
                Point::from_xy(*x, *y),
                font.clone(),
                *size,
                text,
                false,
                TextDirection::Auto,
            );
        }
        Op::Rule {
            x1,
            x2,
            y,
            width,
            colour: c,
        } => line(surface, (*x1, *y), (*x2, *y), *width, *c),
        Op::Bar {
            x,
            y1,
            y2,
            width,
            colour: c,
        } => line(surface, (*x, *y1), (*x, *y2), *width, *c),
    }
}

fn line(surface: &mut Surface<'_>, from: (f32, f32), to: (f32, f32), width: f32, c: layout::Rgb) {
    let mut path = PathBuilder::new();
    path.move_to(from.0, from.1);
    path.line_to(to.0, to.1);
    if let Some(path) = path.finish() {
        surface.set_fill(None);
        surface.set_stroke(Some(Stroke {
            paint: colour(c),
            width,
            ..Stroke::default()
        }));
        surface.draw_path(&path);
        surface.set_stroke(None);
    }
}

/// The PDF's creation date: when this copy was assembled (UTC), never the wall clock.
fn pdf_date(at: DateTime<Utc>) -> PdfDateTime {
    // Years beyond u16 do not occur; the date is then left at year 0 rather than failing.
    PdfDateTime::new(u16::try_from(at.year()).unwrap_or(0))
        .month(at.month() as u8)
        .day(at.day() as u8)
        .hour(at.hour() as u8)
        .minute(at.minute() as u8)
        .second(at.second() as u8)
        .utc_offset_hour(0)
        .utc_offset_minute(0)
}
