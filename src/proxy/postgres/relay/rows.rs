//! PostgreSQL's side of result rewriting (`session/rows.rs`): a
//! RowDescription's columns for the planner, and each DataRow rebuilt by
//! the plan.

use crate::session::mask::MaskPlan;
use crate::session::rows::{Column, Field, Origin, Planner, RowPlan};
use bytes::BytesMut;
use sqlgate_postgres::backend;
use sqlgate_postgres::frontend::DecodeError;
use std::ops::Range;
use std::sync::Arc;

/// A Bind's result-format codes, kept per portal: the format each result
/// column comes in. The common cases (none, one for all) take no
/// allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ResultFormats {
    /// No codes: every column in text.
    Text,
    /// One code for every column.
    All(i16),
    /// One code per column.
    Each(Box<[i16]>),
}

impl ResultFormats {
    /// From the codes as they are on the wire (two bytes each).
    pub(super) fn from_wire(codes: &[u8]) -> ResultFormats {
        let mut it = codes
            .chunks_exact(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]));
        match codes.len() / 2 {
            0 => ResultFormats::Text,
            1 => ResultFormats::All(it.next().unwrap_or(0)),
            _ => ResultFormats::Each(it.collect()),
        }
    }

    /// The codes as Bind gave them (none, one, or one per column).
    pub(super) fn codes(&self) -> &[i16] {
        match self {
            ResultFormats::Text => &[],
            ResultFormats::All(f) => std::slice::from_ref(f),
            ResultFormats::Each(f) => f,
        }
    }
}

/// The plan for the rows a RowDescription announces, if the planner has one.
pub(super) fn plan(planner: &dyn Planner, msg: &[u8]) -> Result<Option<Arc<RowPlan>>, DecodeError> {
    let cols = backend::row_description(msg)?;
    let cols: Vec<Column<'_>> = cols
        .iter()
        .map(|c| Column {
            name: c.name,
            origin: match (c.table, c.attnum) {
                (0, _) | (_, 0) => Origin::Computed,
                (table, attnum) => Origin::Attribute { table, attnum },
            },
            type_id: c.type_oid,
            binary: c.format == 1,
        })
        .collect();
    Ok(planner.plan(Some(&cols)))
}

/// The row plan of a masked statement for the result RowDescription `msg`
/// announces: masked text for text-like columns, NULL for others; `None`
/// when the result is not as wide as the plan (it was read wrongly: the
/// session ends rather than a row pass unmasked).
pub(super) fn masked_plan(m: &MaskPlan, msg: &[u8]) -> Option<RowPlan> {
    let cols = backend::row_description(msg).ok()?;
    if cols.len() != m.width {
        return None;
    }
    // Each masked position holds the column the plan says, by name: a
    // column list read before the table changed would put it elsewhere.
    if m.columns.iter().any(|c| {
        let want = c.column.rsplit('.').next().unwrap_or("");
        cols.get(c.position)
            .is_none_or(|d| d.name != want.as_bytes() && d.name != c.output.as_bytes())
    }) {
        return None;
    }
    // text, varchar, bpchar, name: their text and binary forms are the text.
    let text_like = |i: usize| {
        cols.get(i)
            .is_some_and(|c| matches!(c.type_oid, 25 | 1043 | 1042 | 19))
    };
    Some(m.row_plan(&text_like))
}

/// Whether a column of the result RowDescription `msg` announces comes
/// straight from a column masked for this agent (its origin: table OID and
/// attribute number, as the catalog names them) without `plan` masking it:
/// then sqlgate's reading of the statement was wrong, and nothing of the
/// result may pass. A RowDescription that does not parse counts too.
pub(super) fn unmasked_origin(
    masks: &dyn crate::classify::lineage::Masks,
    catalog: &crate::catalog::Catalog,
    msg: &[u8],
    plan: Option<&MaskPlan>,
) -> bool {
    let Ok(cols) = backend::row_description(msg) else {
        return true;
    };
    cols.iter().enumerate().any(|(i, c)| {
        let masked_here = plan.is_some_and(|p| p.columns.iter().any(|m| m.position == i));
        if c.table == 0 || c.attnum <= 0 || masked_here {
            return false;
        }
        match catalog.column_at(c.table, c.attnum) {
            Some((t, col)) => masks.column(&t, &col).is_some(),
            // A column of a masked table the snapshot does not know (the
            // table changed since it was read): its reading is stale.
            None => catalog.relation_at(c.table).is_none_or(|t| masks.table(&t)),
        }
    })
}

/// Appends DataRow `msg` rebuilt by `plan` to `out`. A row that does not
/// parse is an error (the session ends: nothing unplanned passes).
pub(super) fn rewrite(msg: &[u8], plan: &RowPlan, out: &mut BytesMut) -> Result<(), DecodeError> {
    if let Some(w) = plan.width {
        // A result other than the plan was made for: fail closed.
        let n = msg.get(5..7).map(|b| i16::from_be_bytes([b[0], b[1]]));
        if n.and_then(|n| usize::try_from(n).ok()) != Some(w) {
            return Err(DecodeError::Truncated);
        }
    }
    if !plan.masks() {
        return rebuild(msg, plan, &[], &[], out);
    }
    // The masked forms of this row's fields, made before the row is
    // written (the writer borrows every field at once), into buffers kept
    // per thread: no allocation per row.
    thread_local! {
        static SCRATCH: std::cell::RefCell<(Vec<u8>, Spans)> =
            const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
    }
    SCRATCH.with(|s| {
        let (text, spans) = &mut *s.borrow_mut();
        text.clear();
        spans.clear();
        for (i, f) in backend::data_row_fields(msg)?.enumerate() {
            if let (Field::Mask(m), Some(v)) = (plan.field(i), f?) {
                let at = text.len();
                spans.resize(i + 1, None);
                let masked = m.apply(v, text);
                spans[i] = masked.then_some(at..text.len());
            }
        }
        rebuild(msg, plan, text, spans, out)
    })
}

/// Where each masked field's replacement is in the scratch text.
type Spans = Vec<Option<Range<usize>>>;

/// DataRow `msg` rebuilt by `plan` into `out`; a masked field `i` is
/// `text[spans[i]]` (NULL when it has no span).
fn rebuild(
    msg: &[u8],
    plan: &RowPlan,
    text: &[u8],
    spans: &[Option<Range<usize>>],
    out: &mut BytesMut,
) -> Result<(), DecodeError> {
    let start = out.len();
    let fields = backend::data_row_fields(msg)?;
    let mut bad = None;
    let rebuilt = fields.enumerate().map(|(i, f)| {
        let f = f.unwrap_or_else(|e| {
            bad = Some(e);
            None
        });
        match plan.field(i) {
            Field::Keep => f,
            Field::Null => None,
            Field::Value(v) => Some(&v[..]),
            // A NULL stays NULL; a value becomes its masked form.
            Field::Mask(_) => spans.get(i).cloned().flatten().map(|r| &text[r]),
        }
    });
    let r = backend::data_row(rebuilt, out);
    if let Some(e) = bad {
        out.truncate(start);
        return Err(e);
    }
    r.inspect_err(|_| out.truncate(start))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn row(fields: &[Option<&[u8]>]) -> BytesMut {
        let mut b = BytesMut::new();
        backend::data_row(fields.iter().copied(), &mut b).unwrap();
        b
    }

    #[test]
    fn result_formats_as_bind_gives_them() {
        assert_eq!(ResultFormats::from_wire(&[]), ResultFormats::Text);
        assert_eq!(ResultFormats::from_wire(&[]).codes(), &[] as &[i16]);
        let all = ResultFormats::from_wire(&[0, 1]);
        assert_eq!((&all, all.codes()), (&ResultFormats::All(1), &[1i16][..]));
        let each = ResultFormats::from_wire(&[0, 1, 0, 0, 0, 1]);
        assert_eq!(each, ResultFormats::Each(Box::new([1, 0, 1])));
        assert_eq!(each.codes(), &[1, 0, 1]);
    }

    #[test]
    fn the_keep_all_plan_gives_the_row_back_byte_for_byte() {
        let msg = row(&[Some(b"42"), None, Some(b""), Some(&[0; 70_000])]);
        let mut out = BytesMut::from(&b"before"[..]);
        rewrite(&msg, &RowPlan::keep_all(), &mut out).unwrap();
        assert_eq!(&out[..6], b"before");
        assert_eq!(&out[6..], &msg[..]);
    }

    #[test]
    fn a_plan_rewrites_the_fields_it_names_and_only_those() {
        let msg = row(&[Some(b"1"), Some(b"ann@example.com"), Some(b"x"), None]);
        let mut plan = RowPlan::keep_all();
        plan.set(1, Field::Value(Bytes::from_static(b"***")));
        plan.set(2, Field::Null);
        plan.set(3, Field::Value(Bytes::from_static(b"was null")));
        plan.set(9, Field::Null); // past the row: nothing
        let mut out = BytesMut::new();
        rewrite(&msg, &plan, &mut out).unwrap();
        assert_eq!(
            out,
            row(&[Some(b"1"), Some(b"***"), None, Some(b"was null")])
        );
    }

    #[test]
    fn masked_fields_become_their_masked_form_and_nulls_stay_null() {
        use crate::session::mask::Masker;
        let msg = row(&[Some(b"7"), Some(b"123-45-6789"), None, Some(b"ann@x.org")]);
        let mut plan = RowPlan::keep_all();
        plan.set(1, Field::Mask(Masker::Partial { keep_last: 4 }));
        plan.set(2, Field::Mask(Masker::Redact));
        plan.set(3, Field::Mask(Masker::Email));
        let mut out = BytesMut::new();
        rewrite(&msg, &plan, &mut out).unwrap();
        assert_eq!(
            out,
            row(&[Some(b"7"), Some(b"****6789"), None, Some(b"****@x.org")])
        );
        let mut plan = RowPlan::keep_all();
        plan.set(0, Field::Mask(Masker::Null));
        let mut out = BytesMut::new();
        rewrite(&msg, &plan, &mut out).unwrap();
        assert_eq!(
            out,
            row(&[None, Some(b"123-45-6789"), None, Some(b"ann@x.org")])
        );
    }

    #[test]
    fn a_malformed_row_is_an_error_and_leaves_nothing_behind() {
        let msg = row(&[Some(b"abc"), Some(b"def")]);
        let mut out = BytesMut::from(&b"kept"[..]);
        assert!(rewrite(&msg[..msg.len() - 1], &RowPlan::keep_all(), &mut out).is_err());
        assert!(rewrite(&msg[..3], &RowPlan::keep_all(), &mut out).is_err());
        assert_eq!(&out[..], b"kept");
    }

    #[test]
    fn columns_reach_the_planner_with_their_origin() {
        struct Seen(std::sync::Mutex<Vec<String>>);
        impl Planner for Seen {
            fn plan(&self, columns: Option<&[Column<'_>]>) -> Option<Arc<RowPlan>> {
                let mut seen = self.0.lock().unwrap();
                for c in columns.unwrap() {
                    seen.push(format!(
                        "{}:{:?}:{}:{}",
                        String::from_utf8_lossy(c.name),
                        c.origin,
                        c.type_id,
                        c.binary
                    ));
                }
                None
            }
        }
        let mut body = 2i16.to_be_bytes().to_vec();
        for (name, table, attnum, fmt) in [
            (&b"email"[..], 16384u32, 2i16, 0i16),
            (b"?column?", 0, 0, 1),
        ] {
            body.extend_from_slice(name);
            body.push(0);
            body.extend_from_slice(&table.to_be_bytes());
            body.extend_from_slice(&attnum.to_be_bytes());
            body.extend_from_slice(&25u32.to_be_bytes());
            body.extend_from_slice(&(-1i16).to_be_bytes());
            body.extend_from_slice(&(-1i32).to_be_bytes());
            body.extend_from_slice(&fmt.to_be_bytes());
        }
        let mut msg = vec![b'T'];
        msg.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        msg.extend_from_slice(&body);
        let p = Seen(Default::default());
        assert_eq!(plan(&p, &msg).unwrap(), None);
        assert_eq!(
            *p.0.lock().unwrap(),
            [
                "email:Attribute { table: 16384, attnum: 2 }:25:false",
                "?column?:Computed:25:true"
            ]
        );
        assert!(plan(&p, &msg[..msg.len() - 2]).is_err());
    }
}
