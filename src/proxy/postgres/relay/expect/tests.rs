//! The queue against recorded message sequences: what the client side sent
//! (the entries pushed), what the server answered (the messages, as a
//! PostgreSQL 15 sends them), and what must become of each.

use super::{Described, Expect, ExpectQueue, Finished, How, Learned, Pass};
use crate::audit::{Outcome, ServerError, SessionInfo, StatementEvent};
use crate::classify::Analysis;
use crate::policy::Action;
use crate::proxy::postgres::relay::extended::UpName;
use bytes::Bytes;
use sqlgate_postgres::backend::{Report, Severity};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

const MARKER: &str = "sqlgate.denied.0011223344556677.";

fn failed(code: &[u8; 5]) -> Outcome {
    Outcome::Failed(ServerError::SqlState(*code))
}

fn queue() -> ExpectQueue {
    ExpectQueue::new(MARKER.into(), Learned::new(b'I', 0))
}

/// A statement forwarded, named by its rule (to tell records apart).
fn statement(name: &str) -> Expect {
    statement_limited(name, None)
}

fn statement_limited(name: &str, limit: Option<u64>) -> Expect {
    let ev = StatementEvent {
        time: SystemTime::now(),
        session: Arc::new(SessionInfo {
            id: "s".into(),
            agent: "a".into(),
            client: "c".into(),
            database: "d".into(),
            protocol: crate::config::Protocol::Postgres,
            listener: "127.0.0.1:6432".into(),
        }),
        analysis: Arc::new(Analysis { statements: vec![] }),
        index: 0,
        sql_sha256: "".into(),
        rule: name.into(),
        action: Action::Allow,
        outcome: Outcome::Ok,
        rows: None,
        duration_us: None,
        approval: None,
        masked: None,
    };
    Expect::Statement(Box::new(ev), Instant::now(), limit, None)
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn ready(status: u8) -> Vec<u8> {
    frame(b'Z', &[status])
}

fn complete(tag: &str) -> Vec<u8> {
    frame(b'C', &cstr(tag))
}

fn row(values: &[&str]) -> Vec<u8> {
    let mut b = (values.len() as i16).to_be_bytes().to_vec();
    for v in values {
        b.extend_from_slice(&(v.len() as i32).to_be_bytes());
        b.extend_from_slice(v.as_bytes());
    }
    frame(b'D', &b)
}

/// A RowDescription of text columns.
fn description(names: &[&str]) -> Vec<u8> {
    let mut b = (names.len() as i16).to_be_bytes().to_vec();
    for n in names {
        b.extend_from_slice(&cstr(n));
        b.extend_from_slice(&0i32.to_be_bytes()); // table
        b.extend_from_slice(&0i16.to_be_bytes()); // column
        b.extend_from_slice(&25i32.to_be_bytes()); // text
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes()); // format
    }
    frame(b'T', &b)
}

fn error(code: &str, message: &str) -> Vec<u8> {
    Report::new(Severity::Error, code, message)
        .encode()
        .to_vec()
}

fn marker_error(n: u64) -> Vec<u8> {
    error(
        "26000",
        &format!("prepared statement \"{MARKER}{n}\" does not exist"),
    )
}

/// Feeds the server's messages; what became of each, and the records.
fn answer(q: &mut ExpectQueue, msgs: &[Vec<u8>]) -> (Vec<Pass>, Vec<Finished>) {
    let mut done = Vec::new();
    let passes = msgs.iter().map(|m| q.answer(m[0], m, &mut done)).collect();
    (passes, done)
}

fn summary(done: &[Finished]) -> Vec<(String, Outcome, Option<u64>, How)> {
    done.iter()
        .map(|f| {
            (
                f.ev.rule.to_string(),
                f.ev.outcome.clone(),
                f.ev.rows,
                f.how,
            )
        })
        .collect()
}

const SUSPENDED: How = How::Completed { suspended: true };
const COMPLETED: How = How::Completed { suspended: false };
use Pass::{Drop, Forward};

#[test]
fn a_simple_query_is_forwarded_and_recorded_with_its_rows() {
    let mut q = queue();
    q.push(statement("select"));
    q.push(Expect::Ready);
    assert!(!q.answered());
    let (p, done) = answer(
        &mut q,
        &[
            description(&["a"]),
            row(&["1"]),
            row(&["2"]),
            complete("SELECT 2"),
            ready(b'I'),
        ],
    );
    assert_eq!(p, vec![Forward; 5]);
    assert_eq!(
        summary(&done),
        [("select".into(), Outcome::Ok, Some(2), COMPLETED)]
    );
    // Answered only once what was passed on is written out.
    assert!(!q.answered());
    assert!(q.publish());
    assert!(q.answered());
    assert!(q.is_empty());
    assert!(!q.publish());
}

#[test]
fn a_string_of_statements_completes_each_in_turn() {
    let mut q = queue();
    q.push(statement("one"));
    q.push(statement("two"));
    q.push(Expect::Ready);
    let (_, done) = answer(
        &mut q,
        &[
            complete("INSERT 0 3"),
            // An empty statement between them has no record of its own
            // here: it completes the next one (as the server answers).
            frame(b'I', &[]),
            ready(b'I'),
        ],
    );
    assert_eq!(
        summary(&done),
        [
            ("one".into(), Outcome::Ok, Some(3), COMPLETED),
            ("two".into(), Outcome::Ok, None, COMPLETED),
        ]
    );
}

#[test]
fn an_error_mid_pipeline_skips_the_rest_up_to_sync() {
    // Parse/Bind/Execute ×3, Sync; the second Execute fails.
    let mut q = queue();
    for name in ["one", "two", "three"] {
        q.push(Expect::Complete { swallow: false });
        q.push(Expect::Complete { swallow: false });
        q.push(statement(name));
    }
    q.push(Expect::Ready);
    let (p, done) = answer(
        &mut q,
        &[
            frame(b'1', &[]),
            frame(b'2', &[]),
            complete("UPDATE 1"),
            frame(b'1', &[]),
            frame(b'2', &[]),
            error("23505", "duplicate key"),
            ready(b'I'),
        ],
    );
    assert_eq!(p, vec![Forward; 7]);
    assert_eq!(
        summary(&done),
        [
            ("one".into(), Outcome::Ok, Some(1), COMPLETED),
            ("two".into(), failed(b"23505"), None, How::Failed),
            ("three".into(), Outcome::NotExecuted, None, How::Skipped),
        ]
    );
    assert!(q.is_empty());
}

#[test]
fn an_error_answering_a_parse_is_the_parses_not_the_statements() {
    let mut q = queue();
    q.push(Expect::Complete { swallow: false });
    q.push(Expect::Complete { swallow: false });
    q.push(statement("one"));
    q.push(Expect::Ready);
    let (_, done) = answer(&mut q, &[error("42601", "syntax error")]);
    assert!(done.is_empty());
    assert!(q.failed());
    let (_, done) = answer(&mut q, &[ready(b'I')]);
    assert_eq!(
        summary(&done),
        [("one".into(), Outcome::NotExecuted, None, How::Skipped)]
    );
    assert!(!q.failed());
}

#[test]
fn a_staged_denial_becomes_sqlgates_error() {
    let report = Bytes::from_static(b"E\0\0\0\x05x");
    let mut q = queue();
    q.push(statement("allowed"));
    q.push(Expect::Ready);
    q.push(Expect::Denial(0, report.clone()));
    q.push(Expect::Ready);
    let (p, done) = answer(
        &mut q,
        &[
            complete("SELECT 0"),
            ready(b'I'),
            marker_error(0),
            ready(b'I'),
        ],
    );
    assert_eq!(p, vec![Forward, Forward, Pass::Denial(report), Forward]);
    assert_eq!(done.len(), 1);
    assert!(q.publish());
    assert!(q.answered());
}

#[test]
fn a_denial_marker_out_of_order_loses_the_session() {
    let mut q = queue();
    q.push(Expect::Denial(0, Bytes::new()));
    q.push(Expect::Ready);
    q.push(Expect::Denial(1, Bytes::new()));
    q.push(Expect::Ready);
    let (p, _) = answer(&mut q, &[marker_error(1)]);
    assert!(matches!(p[0], Pass::Lost(_)));
}

#[test]
fn a_marker_lookalike_from_another_name_is_the_servers_error() {
    let mut q = queue();
    q.push(statement("exec"));
    q.push(Expect::Ready);
    let (p, done) = answer(
        &mut q,
        &[error(
            "26000",
            "prepared statement \"sqlgate.denied.ffff.0\" does not exist",
        )],
    );
    assert_eq!(p, [Forward]);
    assert_eq!(done[0].ev.outcome, failed(b"26000"));
}

#[test]
fn keepalives_during_a_hold_are_not_the_agents() {
    let mut q = queue();
    q.push(statement("before"));
    q.push(Expect::Ready);
    answer(&mut q, &[complete("BEGIN"), ready(b'T')]);
    q.publish();
    // The held statement waits; two keepalive Syncs go upstream.
    q.push(Expect::SwallowReady);
    q.push(Expect::SwallowReady);
    let (p, done) = answer(&mut q, &[ready(b'T'), ready(b'T')]);
    assert_eq!(p, [Drop, Drop]);
    assert!(done.is_empty());
    assert!(!q.publish());
    assert!(q.answered());
}

#[test]
fn the_idle_timeout_probe_is_learnt_and_not_passed_on() {
    let mut q = queue();
    q.push(Expect::Probe);
    let (p, _) = answer(
        &mut q,
        &[
            description(&["idle_in_transaction_session_timeout"]),
            row(&["5s"]),
            complete("SHOW"),
            description(&["idle_session_timeout"]),
            row(&["0"]),
            complete("SHOW"),
            ready(b'T'),
        ],
    );
    assert_eq!(p, vec![Pass::Probe; 7]);
    assert_eq!(q.idle_timeout_ms(), 5_000);
    assert!(q.is_empty());
    // In a failed transaction the probe fails: the timeouts stay as known.
    q.push(Expect::Probe);
    let (p, _) = answer(&mut q, &[error("25P02", "aborted"), ready(b'E')]);
    assert_eq!(p, vec![Pass::Probe; 2]);
    assert_eq!(q.idle_timeout_ms(), 5_000);
}

#[test]
fn a_copy_in_ignores_the_sync_after_its_execute() {
    let mut q = queue();
    q.push(Expect::Complete { swallow: false });
    q.push(Expect::Complete { swallow: false });
    q.push(statement("copy"));
    q.push(Expect::CopySync(1));
    let (p, _) = answer(
        &mut q,
        &[frame(b'1', &[]), frame(b'2', &[]), frame(b'G', &[0, 0, 0])],
    );
    assert_eq!(p, vec![Forward; 3]);
    assert!(q.copy_in());
    // CopyData, CopyDone, Sync.
    q.push(Expect::Ready);
    let (p, done) = answer(&mut q, &[complete("COPY 2"), ready(b'I')]);
    assert_eq!(p, [Forward, Forward]);
    assert_eq!(
        summary(&done),
        [("copy".into(), Outcome::Ok, Some(2), COMPLETED)]
    );
    assert!(!q.copy_in());
    assert_eq!(q.copy_answered(), 0);
    assert!(q.publish());
    assert!(q.answered());
}

#[test]
fn a_copy_that_fails_before_taking_data_answers_its_sync() {
    let mut q = queue();
    q.push(statement("copy"));
    q.push(Expect::CopySync(3));
    let (p, done) = answer(&mut q, &[error("42P01", "no such table"), ready(b'I')]);
    assert_eq!(p, [Forward, Forward]);
    assert_eq!(done[0].how, How::Failed);
    assert_eq!(q.copy_answered(), 3);
    // The agent sees that ReadyForQuery, and waits for no other.
    assert!(q.publish());
    assert!(q.answered());
}

#[test]
fn an_error_in_copy_in_drops_the_ignored_sync() {
    let mut q = queue();
    q.push(statement("copy"));
    q.push(Expect::CopySync(1));
    answer(&mut q, &[frame(b'G', &[0, 0, 0])]);
    // CopyFail, Sync.
    q.push(Expect::Ready);
    let (p, done) = answer(
        &mut q,
        &[error("57014", "COPY from stdin failed"), ready(b'I')],
    );
    assert_eq!(p, [Forward, Forward]);
    assert_eq!(done[0].ev.outcome, failed(b"57014"));
    assert_eq!(q.copy_answered(), 0);
    assert!(q.is_empty());
}

#[test]
fn sqlgates_own_transaction_around_a_counted_statement() {
    // The row guard's wrap: BEGIN, the statement, then COMMIT passed on
    // as the answer to the agent's Query (`guard.rs`).
    let mut q = queue();
    q.push(Expect::InjectedComplete);
    q.push(Expect::InjectedReady {
        pass: false,
        answer: None,
    });
    q.expect_held_ready();
    q.push(statement_limited("update", Some(10)));
    q.push(Expect::HeldReady);
    let (p, done) = answer(
        &mut q,
        &[
            complete("BEGIN"),
            ready(b'T'),
            complete("UPDATE 4"),
            ready(b'T'),
        ],
    );
    assert_eq!(p, [Drop, Drop, Forward, Drop]);
    assert!(q.held_ready());
    assert_eq!(done[0].limit, Some(10));
    let answer_bytes = Bytes::from_static(b"notice");
    q.push(Expect::InjectedComplete);
    q.push(Expect::InjectedReady {
        pass: true,
        answer: Some(answer_bytes.clone()),
    });
    let (p, _) = answer(&mut q, &[complete("COMMIT"), ready(b'I')]);
    assert_eq!(p, [Drop, Pass::After(answer_bytes)]);
    assert!(q.publish());
    assert!(q.answered());
}

#[test]
fn a_held_portals_description_carries_its_formats() {
    let mut q = queue();
    q.push(Expect::Describe(Described::Portal(
        super::super::rows::ResultFormats::All(1),
    )));
    q.push(Expect::Ready);
    let (p, _) = answer(
        &mut q,
        &[frame(b't', &[0, 1, 0, 0, 0, 25]), description(&["a"])],
    );
    assert_eq!(p[0], Drop);
    let Pass::Instead(m) = &p[1] else {
        panic!("{:?}", p[1]);
    };
    // The format code, last in the field.
    assert_eq!(&m[m.len() - 2..], &[0, 1]);
}

#[test]
fn descriptions_do_not_reach_past_the_batchs_end() {
    // A simple Query's RowDescription, then a later batch's own Describe.
    let mut q = queue();
    q.push(statement("select"));
    q.push(Expect::Ready);
    q.push(Expect::Describe(Described::Swallow));
    q.push(Expect::Ready);
    let (p, _) = answer(
        &mut q,
        &[
            description(&["a"]),
            complete("SELECT 0"),
            ready(b'I'),
            frame(b'n', &[]),
            ready(b'I'),
        ],
    );
    assert_eq!(p, [Forward, Forward, Forward, Drop, Forward]);
}

#[test]
fn sqlgates_own_parse_bind_and_close_answers_are_dropped() {
    let mut q = queue();
    q.push(Expect::Close {
        swallow: true,
        orphan: None,
    });
    q.push(Expect::Complete { swallow: true });
    q.push(Expect::Complete { swallow: false });
    q.push(Expect::Close {
        swallow: false,
        orphan: None,
    });
    q.push(Expect::Ready);
    let (p, _) = answer(
        &mut q,
        &[
            frame(b'3', &[]),
            frame(b'1', &[]),
            frame(b'2', &[]),
            frame(b'3', &[]),
            ready(b'I'),
        ],
    );
    assert_eq!(p, [Drop, Drop, Forward, Forward, Forward]);
}

#[test]
fn a_close_the_server_skipped_is_closed_again_later() {
    let mut q = queue();
    q.push(statement("failing"));
    q.push(Expect::Close {
        swallow: true,
        orphan: Some((b'S', UpName::for_test(b"sqlgate.s.1.00"))),
    });
    q.push(Expect::Ready);
    answer(&mut q, &[error("22012", "division by zero"), ready(b'I')]);
    let orphans = q.take_orphans();
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0].1.as_bytes(), b"sqlgate.s.1.00");
    assert!(q.take_orphans().is_empty());
}

#[test]
fn a_suspended_portal_counts_the_rows_so_far() {
    let mut q = queue();
    q.push(statement("first"));
    q.push(statement("rest"));
    q.push(Expect::Ready);
    let (_, done) = answer(
        &mut q,
        &[
            row(&["1"]),
            row(&["2"]),
            frame(b's', &[]),
            row(&["3"]),
            complete("SELECT 1"),
            ready(b'T'),
        ],
    );
    assert_eq!(
        summary(&done),
        [
            ("first".into(), Outcome::Ok, Some(2), SUSPENDED),
            ("rest".into(), Outcome::Ok, Some(1), COMPLETED),
        ]
    );
}

#[test]
fn rows_streamed_in_pieces_are_counted() {
    let mut q = queue();
    q.push(statement("big"));
    q.push(Expect::Ready);
    q.streamed(b'D');
    q.streamed(b'd');
    let (_, done) = answer(&mut q, &[row(&["x"]), frame(b'C', b"SELECT\0")]);
    assert_eq!(done[0].ev.rows, Some(2));
}

#[test]
fn a_fast_path_call_completes_at_its_response() {
    let mut q = queue();
    q.push(statement("lo_open"));
    q.push(Expect::Ready);
    let (_, done) = answer(
        &mut q,
        &[frame(b'V', &[0, 0, 0, 4, 0, 0, 0, 0]), ready(b'T')],
    );
    assert_eq!(
        summary(&done),
        [("lo_open".into(), Outcome::Ok, None, How::Called)]
    );
}

#[test]
fn statements_unanswered_at_the_end_are_cut_off() {
    let mut q = queue();
    q.push(statement("done"));
    q.push(Expect::Ready);
    q.push(statement("sent"));
    q.push(Expect::Ready);
    answer(&mut q, &[complete("SELECT 0"), ready(b'I')]);
    let cut = q.cut_off();
    assert_eq!(
        summary(&cut),
        [("sent".into(), Outcome::CutOff, None, How::CutOff)]
    );
    assert!(q.is_empty());
}

#[test]
fn answers_nobody_asked_for_are_forwarded_without_records() {
    // A NoticeResponse, a ParameterStatus, a NotificationResponse: the
    // agent's, whatever is queued.
    let mut q = queue();
    q.push(statement("s"));
    q.push(Expect::Ready);
    let (p, done) = answer(
        &mut q,
        &[
            frame(b'N', b"SNOTICE\0\0"),
            frame(b'S', b"TimeZone\0UTC\0"),
            frame(b'A', b"\0\0\0\x01c\0\0"),
        ],
    );
    assert_eq!(p, [Forward, Forward, Forward]);
    assert!(done.is_empty());
}

#[test]
fn timeouts_read_as_show_prints_them() {
    use super::timeout_ms;
    assert_eq!(timeout_ms(b"0"), Some(0));
    assert_eq!(timeout_ms(b"250ms"), Some(250));
    assert_eq!(timeout_ms(b"2s"), Some(2_000));
    assert_eq!(timeout_ms(b"5min"), Some(300_000));
    assert_eq!(timeout_ms(b"1d"), Some(86_400_000));
    assert_eq!(timeout_ms(b"2 weeks"), None);
    assert_eq!(timeout_ms(b""), None);
}

fn planned(name: &str, plan: &Arc<RowPlan>) -> Expect {
    match statement(name) {
        Expect::Statement(ev, t, limit, _) => Expect::Statement(ev, t, limit, Some(plan.clone())),
        _ => unreachable!(),
    }
}

use crate::session::rows::RowPlan;

#[test]
fn a_simple_query_s_rows_take_the_plan_its_description_got_and_only_they() {
    let plan = Arc::new(RowPlan::keep_all());
    let mut q = queue();
    // Two statements of one string: only the first is planned.
    q.push(statement("first"));
    q.push(statement("second"));
    q.push(Expect::Ready);
    let mut done = Vec::new();
    assert_eq!(q.answer(b'T', &description(&["a"]), &mut done), Forward);
    assert!(q.plan_rows(plan.clone()));
    assert!(q.rewriting());
    // A streamed DataRow of a planned result: the two disagree.
    assert!(!q.streamed(b'D'));
    let (p, _) = answer(&mut q, &[row(&["1"]), row(&["2"]), complete("SELECT 3")]);
    assert_eq!(
        p,
        vec![
            Pass::Rewrite(plan.clone()),
            Pass::Rewrite(plan.clone()),
            Forward
        ]
    );
    assert!(!q.rewriting());
    // The second statement's description is not planned here: its rows pass.
    assert_eq!(q.answer(b'T', &description(&["b"]), &mut done), Forward);
    let (p, done) = answer(&mut q, &[row(&["x"]), complete("SELECT 1"), ready(b'I')]);
    assert_eq!(p, vec![Forward, Forward, Forward]);
    assert!(q.streamed(b'D'));
    assert_eq!(
        summary(&done),
        [("second".to_string(), Outcome::Ok, Some(1), COMPLETED)]
    );
    // Nothing owed: a plan has nowhere to go.
    assert!(!q.plan_rows(plan));
}

#[test]
fn a_describe_s_answer_is_not_planned_but_an_execute_carries_its_portal_s_plan() {
    let plan = Arc::new(RowPlan::keep_all());
    let mut q = queue();
    q.push(Expect::Describe(Described::Pass));
    q.push(planned("execute", &plan));
    q.push(Expect::Ready);
    let mut done = Vec::new();
    assert_eq!(q.answer(b'T', &description(&["a"]), &mut done), Forward);
    // The description answered the Describe: planning it is refused.
    assert!(!q.plan_rows(Arc::new(RowPlan::keep_all())));
    let (p, done) = answer(&mut q, &[row(&["1"]), complete("SELECT 1"), ready(b'I')]);
    assert_eq!(p, vec![Pass::Rewrite(plan), Forward, Forward]);
    assert_eq!(summary(&done)[0].2, Some(1));
    // A planned statement of a later batch does not plan this one's rows.
    let later = Arc::new(RowPlan::keep_all());
    q.push(statement("now"));
    q.push(Expect::Ready);
    q.push(planned("later", &later));
    q.push(Expect::Ready);
    assert!(!q.rewriting());
    let (p, _) = answer(&mut q, &[row(&["1"]), complete("SELECT 1"), ready(b'I')]);
    assert_eq!(p, vec![Forward, Forward, Forward]);
    assert!(q.rewriting());
}
