use super::*;
use crate::classify::{Class, ClassSet};
use crate::policy::ApprovalSpec;

fn service(timeout: Duration) -> (Approvals, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("sqlgate-approvals-{}", rand::random::<u64>()));
    let path = dir.join("audit.jsonl");
    let cfg = crate::config::Audit::new(path.clone(), dir.join("signing.key"));
    let (audit, _writer) = AuditLog::open(&cfg).unwrap();
    let g = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let approvers = vec![
        Approver::new("alice", "tok-alice", &g(&["dba"]), &[]),
        Approver::new("bob", "tok-bob", &g(&["dba"]), &[]),
        Approver::new("carol", "tok-carol", &g(&["dba"]), &g(&["bot"])),
        Approver::new("dave", "tok-dave", &g(&["sales"]), &[]),
        Approver::new("bot", "tok-bot", &g(&["dba"]), &[]),
    ];
    (Approvals::new(approvers, timeout, audit), path)
}

fn request(quorum: u32) -> NewRequest {
    NewRequest {
        agent: Arc::from("bot"),
        database: "app".into(),
        session: "s1".into(),
        client: "127.0.0.1:1".into(),
        statements: vec![HeldStatement {
            command: "DROP TABLE".into(),
            text: "drop table t".into(),
            classes: ClassSet::of(&[Class::Ddl]),
            tables: vec!["public.t".into()],
            fingerprint: "drop table public.t".into(),
        }],
        string: vec![],
        session_changed: false,
        parameters: None,
        rule: Arc::from("ddl"),
        reason: Arc::from("schema changes wait for a dba"),
        spec: Arc::new(ApprovalSpec {
            approver_groups: vec!["dba".into()],
            quorum,
            timeout: None,
            show_literals: false,
        }),
        names: Some(Arc::from("")),
        search_path: None,
        sql_sha256: Arc::from("0".repeat(64)),
    }
}

fn vote(approve: bool) -> Vote {
    Vote {
        approve,
        reason: Some("because".into()),
        channel: "test",
        grant: None,
    }
}

fn held(s: Submitted) -> Hold {
    match s {
        Submitted::Held(h) => h,
        _ => panic!("expected a hold"),
    }
}

#[tokio::test]
async fn quorum_of_distinct_approvers_then_final() {
    let (a, _) = service(Duration::from_secs(60));
    let mut h = held(a.submit(request(2)));
    let id = h.request.id.clone();
    let alice = a.authenticate("tok-alice").unwrap().clone();
    let bob = a.authenticate("tok-bob").unwrap().clone();
    a.vote(&id, &alice, vote(true)).unwrap();
    assert_eq!(
        a.vote(&id, &alice, vote(true)).unwrap_err(),
        VoteError::AlreadyVoted("alice".into())
    );
    assert_eq!(h.request.state_name(), "pending");
    a.vote(&id, &bob, vote(true)).unwrap();
    assert!(matches!(h.decided().await, Resolution::Approved { ref by, .. } if by.len() == 2));
    let dave_free = a.authenticate("tok-carol").unwrap().clone();
    assert!(matches!(
        a.vote(&id, &dave_free, vote(false)),
        Err(VoteError::SelfApproval { .. })
    ));
    assert!(matches!(
        a.vote("apr_nope", &bob, vote(true)),
        Err(VoteError::NotFound(_))
    ));
    assert_eq!(a.list(Some("approved")).len(), 1);
    assert!(a.list(None).is_empty());
}

#[tokio::test]
async fn one_deny_denies_and_later_votes_conflict() {
    let (a, _) = service(Duration::from_secs(60));
    let mut h = held(a.submit(request(2)));
    let id = h.request.id.clone();
    a.vote(
        &id,
        &a.authenticate("tok-alice").unwrap().clone(),
        vote(false),
    )
    .unwrap();
    assert!(matches!(h.decided().await, Resolution::Denied { ref by, .. } if by == "alice"));
    let e = a
        .vote(&id, &a.authenticate("tok-bob").unwrap().clone(), vote(true))
        .unwrap_err();
    assert_eq!(e, VoteError::AlreadyDecided("denied"));
    assert_eq!(e.http_status(), 409);
}

#[tokio::test]
async fn self_approval_and_wrong_group_are_refused() {
    let (a, _) = service(Duration::from_secs(60));
    let h = held(a.submit(request(1)));
    let id = h.request.id.clone();
    for tok in ["tok-bot", "tok-carol"] {
        let who = a.authenticate(tok).unwrap().clone();
        let e = a.vote(&id, &who, vote(true)).unwrap_err();
        assert!(matches!(e, VoteError::SelfApproval { .. }), "{tok}: {e}");
        assert_eq!(e.http_status(), 403);
    }
    let dave = a.authenticate("tok-dave").unwrap().clone();
    assert!(matches!(
        a.vote(&id, &dave, vote(true)),
        Err(VoteError::NotInGroup { .. })
    ));
    assert!(a.authenticate("tok-nobody").is_none());
    assert_eq!(h.request.state_name(), "pending");
}

#[tokio::test(start_paused = true)]
async fn undecided_requests_time_out() {
    let (a, _) = service(Duration::from_secs(300));
    let mut h = held(a.submit(request(1)));
    tokio::time::sleep(Duration::from_secs(301)).await;
    assert_eq!(h.decided().await, Resolution::TimedOut);
}

#[tokio::test]
async fn grants_cover_the_same_statement_for_the_same_agent_only() {
    let (a, _) = service(Duration::from_secs(60));
    let h = held(a.submit(request(1)));
    let alice = a.authenticate("tok-alice").unwrap().clone();
    let v = Vote {
        grant: Some(Duration::from_secs(900)),
        ..vote(true)
    };
    a.vote(&h.request.id, &alice, v).unwrap();
    assert!(matches!(a.submit(request(1)), Submitted::Granted { ref by, .. } if by == "alice"));
    let mut other = request(1);
    other.agent = Arc::from("other-bot");
    assert!(matches!(a.submit(other), Submitted::Held(_)));
    let mut changed = request(1);
    changed.statements[0].fingerprint = "drop table u".into();
    assert!(matches!(a.submit(changed), Submitted::Held(_)));
}

#[tokio::test]
async fn withdrawal_is_final() {
    let (a, _) = service(Duration::from_secs(60));
    let mut h = held(a.submit(request(1)));
    a.withdraw(&h.request, "client disconnected");
    assert!(matches!(h.decided().await, Resolution::Withdrawn { .. }));
    let alice = a.authenticate("tok-alice").unwrap().clone();
    assert_eq!(
        a.vote(&h.request.id, &alice, vote(true)).unwrap_err(),
        VoteError::AlreadyDecided("withdrawn")
    );
}

#[tokio::test]
async fn requests_nobody_may_approve_are_refused_at_once() {
    let (a, _) = service(Duration::from_secs(60));
    let mut r = request(1);
    r.spec = Arc::new(ApprovalSpec {
        approver_groups: vec!["security".into()],
        quorum: 1,
        timeout: None,
        show_literals: false,
    });
    assert!(matches!(a.submit(r), Submitted::Unapprovable(ref why) if why.contains("security")));
}

#[tokio::test]
async fn an_agent_cannot_flood_approvers() {
    let (a, _) = service(Duration::from_secs(60));
    let holds: Vec<_> = (0..MAX_PENDING_PER_AGENT)
        .map(|_| held(a.submit(request(1))))
        .collect();
    assert!(
        matches!(a.submit(request(1)), Submitted::Unapprovable(ref why) if why.contains("waiting"))
    );
    drop(holds);
}

#[tokio::test]
async fn no_grant_covers_unqualified_names_once_they_may_have_moved() {
    let (a, _) = service(Duration::from_secs(60));
    // Unqualified: never granted, whatever the session did.
    let mut plain = request(1);
    plain.statements[0].tables = vec!["t".into()];
    assert_eq!(plain.grant_key(), None);
    // Once names may have moved, not even schema-qualified tables: an
    // unqualified function name may resolve elsewhere (review E, F15).
    let mut moved = request(1);
    moved.names = None;
    assert_eq!(moved.grant_key(), None);
    // Another login path is another key, and so is another search_path the
    // session started with (a database default changed between sessions).
    let mut other = request(1);
    other.names = Some(Arc::from("prod"));
    assert_ne!(other.grant_key(), request(1).grant_key());
    let mut started = request(1);
    started.search_path = Some(Arc::from("prod, public"));
    assert!(started.grant_key().is_some());
    assert_ne!(started.grant_key(), request(1).grant_key());
    drop(a);
}

#[tokio::test]
async fn grants_are_scoped_to_the_database() {
    let (a, _) = service(Duration::from_secs(60));
    let h = held(a.submit(request(1)));
    let alice = a.authenticate("tok-alice").unwrap().clone();
    a.vote(
        &h.request.id,
        &alice,
        Vote {
            grant: Some(Duration::from_secs(600)),
            ..vote(true)
        },
    )
    .unwrap();
    let mut elsewhere = request(1);
    elsewhere.database = "other".into();
    assert!(matches!(a.submit(elsewhere), Submitted::Held(_)));
}

#[tokio::test]
async fn a_grant_needs_the_quorum_and_lasts_the_shortest_asked() {
    let (a, _) = service(Duration::from_secs(60));
    let alice = a.authenticate("tok-alice").unwrap().clone();
    let bob = a.authenticate("tok-bob").unwrap().clone();
    let with = |secs| Vote {
        grant: Some(Duration::from_secs(secs)),
        ..vote(true)
    };
    // Under quorum 2, alice approves once and bob asks for a grant: the
    // statement runs this once, and nothing stands for later.
    let mut h = held(a.submit(request(2)));
    a.vote(&h.request.id, &alice, vote(true)).unwrap();
    a.vote(&h.request.id, &bob, with(86_400)).unwrap();
    assert!(matches!(
        h.decided().await,
        Resolution::Approved { grant: None, .. }
    ));
    let mut again = held(a.submit(request(2)));
    // Both ask: the shorter grant, given by both.
    a.vote(&again.request.id, &alice, with(600)).unwrap();
    a.vote(&again.request.id, &bob, with(86_400)).unwrap();
    assert!(matches!(
        again.decided().await,
        Resolution::Approved { grant: Some(d), .. } if d == Duration::from_secs(600)
    ));
    assert!(matches!(a.submit(request(2)), Submitted::Granted { ref by, .. } if by == "alice,bob"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_is_never_overtaken_by_an_approve_counted_after_it() {
    // Review, suspicious: a deny used to be made final only after its lock
    // was released, so an approve racing it could be counted and win.
    let (a, _) = service(Duration::from_secs(60));
    let alice = a.authenticate("tok-alice").unwrap().clone();
    let bob = a.authenticate("tok-bob").unwrap().clone();
    for _ in 0..200 {
        let mut h = held(a.submit(request(1)));
        let id = h.request.id.clone();
        let (a1, a2) = (a.clone(), a.clone());
        let (i1, i2) = (id.clone(), id.clone());
        let (al, bo) = (alice.clone(), bob.clone());
        let deny = std::thread::spawn(move || a1.vote(&i1, &al, vote(false)).is_ok());
        let approve = std::thread::spawn(move || a2.vote(&i2, &bo, vote(true)).is_ok());
        let (denied, approved) = (deny.join().unwrap(), approve.join().unwrap());
        assert!(denied != approved, "exactly one vote counts");
        let o = h.decided().await;
        assert_eq!(matches!(o, Resolution::Denied { .. }), denied, "{o:?}");
    }
}
