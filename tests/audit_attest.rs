//! Attested audit log: the known-answer vector, every tamper case, crash
//! recovery, file and key rotation, durable acks, and the `sqlgate audit`
//! commands. No database needed: logs are written through `AuditLog`.

use sqlgate::audit::chain::{hash_line, hex, Chain};
use sqlgate::audit::sign::{checkpoint_body, checkpoint_message, PublicKey, SigningKey};
use sqlgate::audit::verify::{verify_files, Options, Problem};
use sqlgate::audit::{AuditLog, Event};
use sqlgate::config::{Audit, Durability};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sqlgate-attest-{name}-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(dir: &Path) -> Audit {
    let mut cfg = Audit::new(dir.join("audit.jsonl"), dir.join("signing.key"));
    cfg.checkpoint_interval = Duration::from_secs(3600);
    cfg
}

fn event(i: u64) -> Event {
    Event::Json(
        serde_json::json!({"kind": "approval_vote", "request": format!("r{i}"), "vote": "approve"}),
    )
}

/// Opens the log, writes `n` records, closes cleanly.
fn write_log(cfg: &Audit, n: u64) {
    let (log, writer) = AuditLog::open(cfg).unwrap();
    for i in 0..n {
        log.record(event(i));
    }
    drop(log);
    writer.close().unwrap();
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn records(p: &Path) -> Vec<serde_json::Value> {
    lines(p)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn write_lines(p: &Path, lines: &[String]) {
    std::fs::write(
        p,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

fn pubkey(cfg: &Audit) -> PublicKey {
    SigningKey::load(&cfg.key).unwrap().public().clone()
}

fn verify(
    files: &[PathBuf],
    keys: &[PublicKey],
    allow_open: bool,
) -> Result<sqlgate::audit::verify::Summary, Problem> {
    let opts = Options {
        keys: keys.to_vec(),
        allow_open,
        ..Options::default()
    };
    verify_files(files, &opts).map_err(|f| f.problem)
}

// ---------------------------------------------------------------- known answer

#[test]
fn known_answer_vector() {
    // 2026-11-21T20:53:15.123456Z
    let t = UNIX_EPOCH + Duration::from_micros(1_795_294_395_123_456);
    let key = SigningKey::from_seed(&[1; 32]);
    assert_eq!(
        key.public().to_text(),
        "ed25519:iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w="
    );
    assert_eq!(key.public().key_id(), "34750f98bd59fcfc");

    let mut chain = Chain::new();
    let mut l0 = Vec::new();
    chain.seal(
        t,
        br#"{"kind":"log_opened","reason":"start","file":"audit.jsonl","version":"0.1.0"}"#,
        &mut l0,
    );
    assert_eq!(
        std::str::from_utf8(&l0).unwrap(),
        r#"{"v":1,"seq":0,"prev":"0000000000000000000000000000000000000000000000000000000000000000","time":"2026-11-21T20:53:15.123456Z","kind":"log_opened","reason":"start","file":"audit.jsonl","version":"0.1.0"}"#
    );
    let h0 = hex(&hash_line(&l0));
    assert_eq!(
        h0,
        "f23881cd248bab24bcf3556d97d7223518aa8bb0e41aa864b6789b44481ce8e2"
    );

    let mut l1 = Vec::new();
    chain.seal(
        t,
        br#"{"kind":"statement","session":"s1","agent":"bot","client":"127.0.0.1:5000","database":"app","command":"SELECT","fingerprint":"select * from t where id = ?","sql_sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","classes":["read"],"tables":["t"],"rule":"default","action":"allow","outcome":"ok","rows":1,"duration_us":250}"#,
        &mut l1,
    );
    assert!(std::str::from_utf8(&l1).unwrap().starts_with(&format!(
        r#"{{"v":1,"seq":1,"prev":"{h0}","time":"2026-11-21T20:53:15.123456Z","kind":"statement""#
    )));
    let h1 = hex(&hash_line(&l1));
    assert_eq!(
        h1,
        "6f8877a06ddcef7f5a325928e353e8fc8f37af7bf2fe2945c4419c622d5bc4b1"
    );

    let msg = checkpoint_message(1, &hash_line(&l1), false);
    assert_eq!(msg, format!("sqlgate-checkpoint-v1:1:{h1}"));
    let sig = key.sign_b64(msg.as_bytes());
    assert_eq!(
        sig,
        "V1xWYTzReVAYFlr1peoALznQ/0wbDxOiHPhtHtLAm23G1Z1z9ejxJyNzUCtKgH2VwxpOQiCPBvWuItNjpl5tAA=="
    );
    assert_eq!(
        checkpoint_body(&key, 1, &hash_line(&l1), false)["sig"],
        sig.as_str()
    );

    let mut l2 = Vec::new();
    let body = format!(
        r#"{{"kind":"checkpoint","key_id":"34750f98bd59fcfc","head_seq":1,"head":"{h1}","sig":"{sig}"}}"#
    );
    chain.seal(t, body.as_bytes(), &mut l2);
    assert_eq!(
        hex(&hash_line(&l2)),
        "c6d5f79cb5989839e40b970b65c2efd3f7befc15cee12c9cb1b596b9415e34ce"
    );

    let dir = temp_dir("kat");
    let p = dir.join("audit.jsonl");
    let text: Vec<String> = [l0, l1, l2]
        .into_iter()
        .map(|l| String::from_utf8(l).unwrap())
        .collect();
    write_lines(&p, &text);
    let s = verify(std::slice::from_ref(&p), &[key.public().clone()], false).unwrap();
    assert_eq!((s.records, s.checkpoints, s.last_seq), (3, 1, 2));
    // Another key does not verify it.
    let other = SigningKey::from_seed(&[2; 32]);
    assert!(matches!(
        verify(&[p], &[other.public().clone()], false),
        Err(Problem::ForgedSignature { seq: 2, .. })
    ));
}

// ---------------------------------------------------------------- the writer

/// A clean log: 0 log_opened, 1 key_rotation (key announced), 2 checkpoint,
/// 3..=12 the events, 13 the closing checkpoint.
fn clean_log(name: &str) -> (Audit, PathBuf) {
    let dir = temp_dir(name);
    let cfg = config(&dir);
    write_log(&cfg, 10);
    let p = cfg.path.clone();
    (cfg, p)
}

#[test]
fn a_clean_log_has_the_documented_shape_and_verifies() {
    let (cfg, p) = clean_log("shape");
    let r = records(&p);
    let kinds: Vec<_> = r.iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert_eq!(&kinds[..3], ["log_opened", "key_rotation", "checkpoint"]);
    assert_eq!(kinds.len(), 14);
    assert_eq!(kinds[13], "checkpoint");
    assert_eq!(r[0]["reason"], "start");
    assert_eq!(r[0]["file"], "audit.jsonl");
    assert!(r[1].get("old_key_id").is_none());
    assert_eq!(r[1]["new_public_key"], pubkey(&cfg).to_text());
    for (i, v) in r.iter().enumerate() {
        assert_eq!(v["v"], 1);
        assert_eq!(v["seq"], i as u64);
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(r[13]["head_seq"], 12);
    let s = verify(std::slice::from_ref(&p), &[pubkey(&cfg)], false).unwrap();
    assert_eq!(
        (s.records, s.checkpoints, s.first_seq, s.last_seq),
        (14, 2, 0, 13)
    );
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    // Without a trust anchor: passes, with a warning.
    let s = verify(&[p], &[], false).unwrap();
    assert!(s.warnings[0].contains("no --public-key"));
}

#[test]
fn the_key_file_is_0600_and_a_readable_one_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let (cfg, _) = clean_log("keymode");
    let mode = std::fs::metadata(&cfg.key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The log holds literals and parameters: owner only too.
    let log = std::fs::metadata(&cfg.path).unwrap().permissions().mode() & 0o777;
    assert_eq!(log, 0o600);
    let text = std::fs::read_to_string(&cfg.key).unwrap();
    assert!(text.starts_with("ed25519-secret:") && text.ends_with('\n'));
    std::fs::set_permissions(&cfg.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = AuditLog::open(&cfg).err().unwrap();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
    assert!(e.to_string().contains("chmod 600"), "{e}");
}

// ---------------------------------------------------------------- tampering

fn tampered(name: &str, edit: impl FnOnce(&mut Vec<String>)) -> (Audit, PathBuf) {
    let (cfg, p) = clean_log(name);
    let mut l = lines(&p);
    edit(&mut l);
    write_lines(&p, &l);
    (cfg, p)
}

#[test]
fn a_modified_field_is_named_by_seq() {
    let (cfg, p) = tampered("modify", |l| {
        l[5] = l[5].replace("\"approve\"", "\"deny\"");
    });
    assert_eq!(
        verify(&[p], &[pubkey(&cfg)], false),
        Err(Problem::Modified { seq: 5, next: 6 })
    );
}

#[test]
fn nothing_can_be_added_to_the_unsigned_last_checkpoint_line() {
    // Review H, H5: the closing checkpoint's line is signed by nothing after
    // it; a field added to it (or a `time` that is not one) is malformed.
    for (name, from, to) in [
        (
            "h5_field",
            "\"kind\":\"checkpoint\"",
            "\"kind\":\"checkpoint\",\"approved_by\":\"alice\"",
        ),
        (
            "h5_time",
            "\"time\":\"",
            "\"time\":\"see approval 7 \u{202e} ",
        ),
    ] {
        let (cfg, p) = tampered(name, |l| {
            let last = l.len() - 1;
            l[last] = l[last].replacen(from, to, 1);
        });
        let r = verify(&[p], &[pubkey(&cfg)], false);
        assert!(
            matches!(r, Err(Problem::Malformed { seq: 13, .. })),
            "{name}: {r:?}"
        );
    }
}

#[test]
fn a_deleted_line_is_missing() {
    let (cfg, p) = tampered("delete", |l| {
        l.remove(6);
    });
    assert_eq!(
        verify(&[p], &[pubkey(&cfg)], false),
        Err(Problem::Missing { seq: 6, found: 7 })
    );
}

#[test]
fn swapped_lines_are_reordered() {
    let (cfg, p) = tampered("swap", |l| l.swap(6, 7));
    assert_eq!(
        verify(&[p], &[pubkey(&cfg)], false),
        Err(Problem::Reordered { seq: 6, after: 7 })
    );
}

#[test]
fn a_copied_line_is_inserted() {
    let (cfg, p) = tampered("insert", |l| {
        let copy = l[4].clone();
        l.insert(8, copy);
    });
    assert_eq!(
        verify(&[p], &[pubkey(&cfg)], false),
        Err(Problem::Inserted { seq: 4, after: 7 })
    );
}

#[test]
fn a_checkpoint_signed_by_another_key_is_forged() {
    let other = SigningKey::from_seed(&[9; 32]);
    let (cfg, p) = tampered("forge", |l| {
        let mut cp: serde_json::Value = serde_json::from_str(&l[13]).unwrap();
        let head = sqlgate::audit::chain::parse_hash(cp["head"].as_str().unwrap()).unwrap();
        cp["sig"] = other
            .sign_b64(checkpoint_message(12, &head, false).as_bytes())
            .into();
        l[13] = serde_json::to_string(&cp).unwrap();
    });
    let e = verify(std::slice::from_ref(&p), &[pubkey(&cfg)], false).unwrap_err();
    assert!(
        matches!(&e, Problem::ForgedSignature { seq: 13, why, .. } if why.contains("does not verify")),
        "{e}"
    );
    // Re-signing under the forger's own key id: not a trusted key.
    let (cfg, p) = tampered("forge-id", |l| {
        let mut cp: serde_json::Value = serde_json::from_str(&l[13]).unwrap();
        let head = sqlgate::audit::chain::parse_hash(cp["head"].as_str().unwrap()).unwrap();
        cp = checkpoint_body(&other, 12, &head, false);
        cp["v"] = 1.into();
        cp["seq"] = 13.into();
        cp["prev"] = hex(&head).into();
        cp["time"] = "2026-01-01T00:00:00.000000Z".into();
        l[13] = serde_json::to_string(&cp).unwrap();
    });
    let e = verify(&[p], &[pubkey(&cfg)], false).unwrap_err();
    assert!(
        matches!(&e, Problem::ForgedSignature { seq: 13, why, .. } if why.contains("not a trusted key")),
        "{e}"
    );
}

#[test]
fn a_cut_last_line_is_truncated() {
    let (cfg, p) = clean_log("truncate");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, &text[..text.len() - 40]).unwrap();
    let e = verify(&[p], &[pubkey(&cfg)], false).unwrap_err();
    assert!(matches!(e, Problem::Truncated { seq: 13, .. }), "{e}");
}

#[test]
fn a_dropped_final_checkpoint_leaves_an_unsigned_tail() {
    let (cfg, p) = tampered("tail", |l| {
        l.pop();
    });
    assert_eq!(
        verify(std::slice::from_ref(&p), &[pubkey(&cfg)], false),
        Err(Problem::UnsignedTail { from: 3, to: 12 })
    );
    let s = verify(&[p], &[pubkey(&cfg)], true).unwrap();
    assert_eq!(s.open_tail, Some((3, 12)));
}

// ---------------------------------------------------------------- recovery

#[test]
fn a_crash_mid_line_is_recovered_and_verifies() {
    let (cfg, p) = clean_log("crash");
    // The crashed run: two records after the last checkpoint, then a torn line.
    let mut l = lines(&p);
    l.pop();
    write_lines(&p, &l);
    let partial = r#"{"v":1,"seq":13,"prev":"ab"#;
    let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
    std::io::Write::write_all(&mut f, partial.as_bytes()).unwrap();
    drop(f);
    write_log(&cfg, 2);
    let r = records(&p);
    let opened = &r[13];
    assert_eq!(opened["kind"], "log_opened");
    assert_eq!(opened["reason"], "recovery");
    assert_eq!(opened["truncated_bytes"], partial.len());
    assert_eq!(opened["seq"], 13);
    // The restart's first checkpoint covers the crashed run's unsigned tail.
    assert_eq!(r[14]["kind"], "checkpoint");
    assert_eq!(r[14]["head_seq"], 13);
    let s = verify(&[p], &[pubkey(&cfg)], false).unwrap();
    assert_eq!((s.recoveries, s.truncated_bytes), (1, partial.len() as u64));
}

#[test]
fn a_clean_restart_says_start_and_continues_the_chain() {
    let (cfg, p) = clean_log("restart");
    write_log(&cfg, 1);
    let r = records(&p);
    assert_eq!(r[14]["kind"], "log_opened");
    assert_eq!(r[14]["reason"], "start");
    assert!(r[14].get("truncated_bytes").is_none());
    // Same key: no key_rotation, straight to the opening checkpoint.
    assert_eq!(r[15]["kind"], "checkpoint");
    verify(&[p], &[pubkey(&cfg)], false).unwrap();
}

// ---------------------------------------------------------------- rotation

#[test]
fn rotated_files_form_one_chain() {
    let dir = temp_dir("rotate");
    let mut cfg = config(&dir);
    cfg.max_file_bytes = 1500;
    cfg.checkpoint_every = 7;
    write_log(&cfg, 40);
    let rotated = sqlgate::audit::recover::rotated_files(&cfg.path).unwrap();
    assert!(rotated.len() >= 3, "{rotated:?}");
    let mut files: Vec<PathBuf> = rotated.iter().map(|(_, p)| p.clone()).collect();
    files.push(cfg.path.clone());
    let mut total = 0;
    for (first, path) in &rotated {
        let r = records(path);
        assert_eq!(r[0]["seq"], *first, "{path:?} is named after its first seq");
        assert_eq!(r.last().unwrap()["kind"], "checkpoint");
        total += r.len();
    }
    let live = records(&cfg.path);
    assert_eq!(live[0]["reason"], "rotation");
    assert_eq!(
        live[0]["previous_file"],
        rotated
            .last()
            .unwrap()
            .1
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
    );
    total += live.len();
    // Any order: the verifier sorts files by their first seq.
    files.reverse();
    let s = verify(&files, &[pubkey(&cfg)], false).unwrap();
    assert_eq!(s.records, total as u64);
    assert_eq!(s.files, files.len());
    // Leaving out a middle file is a gap.
    files.remove(1);
    assert!(matches!(
        verify(&files, &[pubkey(&cfg)], false),
        Err(Problem::Missing { .. })
    ));
    // Records added to the end of a rotated file are named there, not at
    // the genuine start of the next file (review C15).
    let (first_of_next, next) = &rotated[1];
    let (_, earlier) = &rotated[0];
    let genuine = lines(earlier);
    let mut l = genuine.clone();
    l.extend(lines(next).into_iter().take(2));
    write_lines(earlier, &l);
    let mut files: Vec<PathBuf> = rotated.iter().map(|(_, p)| p.clone()).collect();
    files.push(cfg.path.clone());
    let f = verify_files(
        &files,
        &Options {
            keys: vec![pubkey(&cfg)],
            ..Options::default()
        },
    )
    .unwrap_err();
    assert_eq!(
        f.problem,
        Problem::Overlap {
            seq: *first_of_next,
            last: first_of_next + 1
        }
    );
    assert_eq!((&f.file, f.line), (earlier, genuine.len() as u64 + 1));
    write_lines(earlier, &genuine);
    // Restarting continues from the live file.
    write_log(&cfg, 1);
}

#[test]
fn a_new_key_needs_the_old_one_and_is_vouched_for_by_it() {
    let (mut cfg, p) = clean_log("rekey");
    let old = pubkey(&cfg);
    let old_key = cfg.key.clone();
    cfg.key = cfg.key.with_file_name("signing-2.key");
    // A key swapped in without the old one: refused, nothing written.
    let before = lines(&p).len();
    let e = AuditLog::open(&cfg).err().unwrap().to_string();
    assert!(
        e.contains("previous_key") && e.contains(&old.key_id()),
        "{e}"
    );
    assert_eq!(lines(&p).len(), before);
    cfg.previous_key = Some(old_key);
    write_log(&cfg, 3);
    let new = pubkey(&cfg);
    let r = records(&p);
    let rot = r.iter().rposition(|v| v["kind"] == "key_rotation").unwrap();
    assert_eq!(rot, 15);
    assert_eq!(r[rot]["old_key_id"], old.key_id());
    assert_eq!(r[rot]["new_key_id"], new.key_id());
    assert!(r[rot]["sig_old"].is_string());
    assert_eq!(r[rot + 1]["key_id"], new.key_id());
    // The old key vouches for the new one: trusting the old key is enough.
    let s = verify(std::slice::from_ref(&p), std::slice::from_ref(&old), false).unwrap();
    assert_eq!(s.signers.len(), 2);
    // The new key alone does not vouch for the old checkpoints.
    let e = verify(std::slice::from_ref(&p), &[new], false).unwrap_err();
    assert!(
        matches!(&e, Problem::ForgedSignature { seq: 2, why, .. } if why.contains("not a trusted key")),
        "{e}"
    );
    verify(&[p], &[], false).unwrap();
}

// ---------------------------------------------------------------- forgery and cuts

/// A record a forger appends: correctly chained, no key needed.
fn forged_record(p: &Path, body: serde_json::Value) {
    let l = lines(p);
    let last: serde_json::Value = serde_json::from_str(l.last().unwrap()).unwrap();
    let mut chain = Chain::resume(
        last["seq"].as_u64().unwrap(),
        hash_line(l.last().unwrap().as_bytes()),
    );
    let line = chain.seal_json(std::time::SystemTime::now(), &body);
    let mut all = l;
    all.push(String::from_utf8(line).unwrap());
    write_lines(p, &all);
}

#[test]
fn forged_approvals_appended_to_the_log_are_never_signed() {
    let (cfg, p) = clean_log("forge");
    let key = pubkey(&cfg);
    forged_record(
        &p,
        serde_json::json!({"kind": "approval_request", "id": "fake", "sql": "drop table customers"}),
    );
    forged_record(
        &p,
        serde_json::json!({"kind": "approval_vote", "request": "fake", "approver": "alice", "vote": "approve"}),
    );
    let forged_text = std::fs::read_to_string(&p).unwrap();
    // verify names them: records no checkpoint covers.
    assert_eq!(
        verify(std::slice::from_ref(&p), std::slice::from_ref(&key), false),
        Err(Problem::UnsignedTail { from: 14, to: 15 })
    );
    // sqlgate refuses to start on them, naming the first, and writes nothing.
    let e = AuditLog::open(&cfg).err().unwrap().to_string();
    assert!(e.contains("record 14") && e.contains("MAC"), "{e}");
    assert_eq!(std::fs::read_to_string(&p).unwrap(), forged_text);
    assert!(verify(std::slice::from_ref(&p), std::slice::from_ref(&key), false).is_err());

    // A made-up checkpoint after them does not help.
    let (cfg, p) = clean_log("forge-cp");
    forged_record(
        &p,
        serde_json::json!({"kind": "approval_vote", "vote": "approve"}),
    );
    let l = lines(&p);
    let head = hash_line(l.last().unwrap().as_bytes());
    let other = SigningKey::from_seed(&[9; 32]);
    let mut fake = checkpoint_body(&other, 14, &head, false);
    fake["key_id"] = pubkey(&cfg).key_id().into();
    forged_record(&p, fake);
    let e = AuditLog::open(&cfg).err().unwrap().to_string();
    assert!(e.contains("record 15") && e.contains("signature"), "{e}");

    // A copy of the last genuine checkpoint after a forged record does not
    // make the log look cleanly closed.
    let (cfg, p) = clean_log("forge-copy");
    let checkpoint = lines(&p).last().unwrap().clone();
    forged_record(
        &p,
        serde_json::json!({"kind": "approval_vote", "vote": "approve"}),
    );
    let mut l = lines(&p);
    l.push(checkpoint);
    write_lines(&p, &l);
    let e = AuditLog::open(&cfg).err().unwrap().to_string();
    assert!(e.contains("does not follow"), "{e}");

    // A crashed run's own tail still recovers (its records carry MACs).
    let (cfg, p) = tampered("forge-crash", |l| {
        l.pop();
    });
    write_log(&cfg, 1);
    verify(&[p], &[pubkey(&cfg)], false).unwrap();
}

fn anchored(name: &str) -> (Audit, PathBuf, PathBuf) {
    let dir = temp_dir(name);
    let mut cfg = config(&dir);
    let anchor = dir.join("elsewhere").join("audit.anchor");
    cfg.anchor = Some(sqlgate::config::Anchor::File(anchor.clone()));
    cfg.checkpoint_every = 5;
    write_log(&cfg, 20);
    let p = cfg.path.clone();
    (cfg, p, anchor)
}

fn verify_anchored(p: &Path, key: &PublicKey, anchor: &Path) -> Result<(), Problem> {
    let opts = Options {
        keys: vec![key.clone()],
        anchor: sqlgate::audit::anchor::load(anchor).unwrap(),
        ..Options::default()
    };
    verify_files(&[p.to_owned()], &opts)
        .map(|_| ())
        .map_err(|f| f.problem)
}

#[test]
fn a_log_cut_at_a_checkpoint_fails_against_its_anchor() {
    let (cfg, p, anchor) = anchored("anchor");
    let key = pubkey(&cfg);
    let l = lines(&p);
    let checkpoints: Vec<usize> = l
        .iter()
        .enumerate()
        .filter(|(_, x)| x.contains("\"kind\":\"checkpoint\""))
        .map(|(i, _)| i)
        .collect();
    // Every checkpoint reached the anchor, byte for byte, and so did the key
    // rotation announcing the first key.
    let a = lines(&anchor);
    assert_eq!(a.len(), checkpoints.len() + 1);
    assert!(a[0].contains("\"kind\":\"key_rotation\"") && l.contains(&a[0]));
    assert_eq!(a.last(), l.last());
    verify_anchored(&p, &key, &anchor).unwrap();
    // Cut back to an earlier checkpoint: still a valid log on its own…
    let cut = checkpoints[checkpoints.len() - 3];
    write_lines(&p, &l[..=cut]);
    verify(std::slice::from_ref(&p), std::slice::from_ref(&key), false).unwrap();
    // …but not against the anchor,
    assert!(matches!(
        verify_anchored(&p, &key, &anchor),
        Err(Problem::CutBeforeAnchor { .. })
    ));
    // and the evidence report says so when given the anchor (review C15),
    let keys = [key.to_text()];
    let said = sqlgate::cli::audit_tools::verification_summary(
        std::slice::from_ref(&p),
        &keys,
        Some(&anchor),
    );
    assert!(said.contains("FAILED") && said.contains("cut"), "{said}");
    let said =
        sqlgate::cli::audit_tools::verification_summary(std::slice::from_ref(&p), &keys, None);
    assert!(
        said.contains("passed") && said.contains("no --anchor"),
        "{said}"
    );
    // and sqlgate refuses to continue it.
    let e = AuditLog::open(&cfg).err().unwrap().to_string();
    assert!(e.contains("records were cut"), "{e}");
    assert_eq!(lines(&p).len(), cut + 1);
    // Deleting the log altogether is a cut too.
    std::fs::remove_file(&p).unwrap();
    assert!(AuditLog::open(&cfg).is_err());
    // Another log of the same length (a replaced file) does not match it.
    write_lines(&p, &l);
    let mut other = l.clone();
    other[3] = other[3].replace("r0", "rX");
    write_lines(&p, &other);
    assert!(verify_anchored(&p, &key, &anchor).is_err());
}

#[test]
fn a_longer_replaced_log_fails_against_an_anchor_that_missed_its_last_checkpoints() {
    // Review C9: the anchor missed the log's last checkpoints (a crash
    // between the two writes), so its latest is an older one.
    let (cfg, p, anchor) = anchored("anchor-behind");
    let mut a = lines(&anchor);
    a.truncate(2);
    write_lines(&anchor, &a);
    // The log still holds that checkpoint at its seq: it continues.
    write_log(&cfg, 1);
    // Another history signed with the same key, longer than the anchor's:
    // refused at start-up, though its own last checkpoint is further on.
    let mut other = config(&p.parent().unwrap().join("other"));
    other.key = cfg.key.clone();
    other.checkpoint_every = 5;
    write_log(&other, 40);
    std::fs::copy(&other.path, &p).unwrap();
    write_lines(&anchor, &a);
    let e = AuditLog::open(&cfg).err().unwrap().to_string();
    assert!(e.contains("the log was replaced"), "{e}");
    assert!(verify_anchored(&p, &pubkey(&cfg), &anchor).is_err());
}

#[test]
fn an_anchored_log_verifies_with_the_first_key_after_a_rotation() {
    // Review C13: the anchor's checkpoints after a key change are signed by
    // the new key, which only the log's rotation record makes trusted.
    let (mut cfg, p, anchor) = anchored("anchor-rotated");
    let first = pubkey(&cfg);
    cfg.previous_key = Some(cfg.key.clone());
    cfg.key = cfg.key.with_file_name("signing-2.key");
    write_log(&cfg, 12);
    verify_anchored(&p, &first, &anchor).unwrap();
    // Cut back to before the rotation: the anchor's later checkpoints, by the
    // new key, still prove the cut.
    let l = lines(&p);
    let rotation = l
        .iter()
        .position(|x| x.contains("\"kind\":\"key_rotation\""))
        .unwrap();
    write_lines(&p, &l[..rotation]);
    assert!(matches!(
        verify_anchored(&p, &first, &anchor),
        Err(Problem::CutBeforeAnchor { .. })
    ));
    // An anchor line past the log's end that no trusted key signed proves
    // nothing: it is reported as not ours, not as a cut.
    write_lines(&p, &l);
    let mut a = lines(&anchor);
    let forged = a.last().unwrap().replace(
        &format!("\"seq\":{}", l.len() - 1),
        &format!("\"seq\":{}", l.len() + 5),
    );
    a.push(forged);
    write_lines(&anchor, &a);
    assert!(matches!(
        verify_anchored(&p, &first, &anchor),
        Err(Problem::AnchorUnsigned { .. })
    ));
}

#[test]
fn an_anchor_with_lines_out_of_order_is_a_rewrite() {
    // Review A, F10: cut the log back to a checkpoint and append a copy of
    // that checkpoint's own anchor line, so the anchor's last line matches.
    let (cfg, p, anchor) = anchored("anchor-rewrite");
    let l = lines(&p);
    let a = lines(&anchor);
    let back: serde_json::Value = serde_json::from_str(&a[a.len() - 3]).unwrap();
    let seq = back["seq"].as_u64().unwrap() as usize;
    write_lines(&p, &l[..=seq]);
    let mut appended = a.clone();
    appended.push(a[a.len() - 3].clone());
    write_lines(&anchor, &appended);
    let e = AuditLog::open(&cfg).err().unwrap().to_string();
    assert!(e.contains("rewritten"), "{e}");
    let e = sqlgate::audit::anchor::load(&anchor).unwrap_err();
    assert!(e.contains("anchor conflict"), "{e}");
    // A line repeated byte for byte in order (a retried POST) is fine.
    let mut twice = a.clone();
    twice.push(a.last().unwrap().clone());
    write_lines(&anchor, &twice);
    write_lines(&p, &l);
    verify_anchored(&p, &pubkey(&cfg), &anchor).unwrap();
    write_log(&cfg, 1);
}

// ---------------------------------------------------------------- durability

#[tokio::test]
async fn a_durable_ack_resolves_once_the_record_is_on_disk() {
    let dir = temp_dir("durable");
    let cfg = config(&dir);
    let (log, writer) = AuditLog::open(&cfg).unwrap();
    assert!(!log.strict());
    log.record_durable(event(42)).await.unwrap();
    assert!(std::fs::read_to_string(&cfg.path)
        .unwrap()
        .contains("\"r42\""));
    drop(log);
    writer.close().unwrap();
}

#[tokio::test]
async fn a_checkpoint_sync_signs_and_anchors_what_came_before() {
    // Review A, F6: an approval is signed (and anchored) before the
    // statement runs, not left in an unsigned tail a crash opens to a cut.
    let dir = temp_dir("cpsync");
    let mut cfg = config(&dir);
    let anchor = dir.join("elsewhere").join("audit.anchor");
    cfg.anchor = Some(sqlgate::config::Anchor::File(anchor.clone()));
    let (log, writer) = AuditLog::open(&cfg).unwrap();
    log.record(event(7));
    log.checkpoint_sync().await.unwrap();
    let l = lines(&cfg.path);
    assert!(l[l.len() - 2].contains("\"r7\""), "{l:?}");
    assert!(
        l.last().unwrap().contains("\"kind\":\"checkpoint\""),
        "{l:?}"
    );
    assert_eq!(lines(&anchor).last(), l.last());
    drop(log);
    writer.close().unwrap();
}

#[tokio::test]
async fn a_start_after_a_crash_says_recovery() {
    // Review C, F14: a log that ends on a checkpoint is not necessarily
    // closed: a crash right after an approval's checkpoint leaves one too.
    let dir = temp_dir("closing");
    let cfg = config(&dir);
    write_log(&cfg, 1);
    let last: serde_json::Value = serde_json::from_str(lines(&cfg.path).last().unwrap()).unwrap();
    assert_eq!(
        (last["kind"].as_str(), last["closing"].as_bool()),
        (Some("checkpoint"), Some(true))
    );
    let opened = |cfg: &Audit| {
        let (log, writer) = AuditLog::open(cfg).unwrap();
        drop(log);
        writer.close().unwrap();
        records(&cfg.path)
            .into_iter()
            .rev()
            .find(|r| r["kind"] == "log_opened")
            .unwrap()["reason"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(opened(&cfg), "start");
    // Killed right after a checkpoint: the closing one never came.
    let (log, writer) = AuditLog::open(&cfg).unwrap();
    log.record(event(3));
    log.checkpoint_sync().await.unwrap();
    drop(log);
    writer.close().unwrap();
    let mut l = lines(&cfg.path);
    l.pop();
    write_lines(&cfg.path, &l);
    // Review D, F14b: marking that checkpoint closing, without the key, is
    // refused: `closing` is in its signature (and its line has a MAC).
    let mut forged = l.clone();
    let last = forged.pop().unwrap();
    forged.push(last.replacen(
        "\"kind\":\"checkpoint\"",
        "\"kind\":\"checkpoint\",\"closing\":true",
        1,
    ));
    write_lines(&cfg.path, &forged);
    let e = AuditLog::open(&cfg).err().unwrap().to_string();
    assert!(e.contains("signature does not verify"), "{e}");
    // And so is it offline, where the MAC can't be checked (review E).
    let p = verify(std::slice::from_ref(&cfg.path), &[pubkey(&cfg)], false).unwrap_err();
    assert!(matches!(p, Problem::ForgedSignature { .. }), "{p:?}");
    write_lines(&cfg.path, &l);
    assert_eq!(opened(&cfg), "recovery");
}

#[tokio::test]
async fn a_checkpoint_sync_waits_for_an_http_anchor() {
    // Review B, F6b: with an HTTP anchor, the approval's checkpoint has
    // reached the anchor (or been given up) before the statement runs.
    let dir = temp_dir("cpsync-http");
    let (url, rx) = http_anchor();
    let mut cfg = config(&dir);
    cfg.anchor = Some(sqlgate::config::Anchor::Http(url));
    let (log, writer) = AuditLog::open(&cfg).unwrap();
    log.record(event(7));
    log.checkpoint_sync().await.unwrap();
    // The key's first rotation, then the checkpoint: both before the ack.
    let posted: Vec<String> = rx.try_iter().collect();
    let posted = posted
        .last()
        .expect("the checkpoint was POSTed before the ack");
    assert!(posted.contains("\"kind\":\"checkpoint\""), "{posted}");
    assert_eq!(lines(&cfg.path).last().unwrap(), posted);
    drop(log);
    writer.close().unwrap();
}

#[test]
fn a_durable_ack_errors_when_the_writer_dies() {
    let dir = temp_dir("dies");
    let mut cfg = config(&dir);
    // Rotate after every record, then take the folder away: the rename fails
    // and the writer stops with an I/O error.
    cfg.max_file_bytes = 1;
    cfg.durability = Durability::Strict;
    let (log, writer) = AuditLog::open(&cfg).unwrap();
    assert!(log.strict());
    std::fs::remove_dir_all(&dir).unwrap();
    // This record is fsynced before the rotation (and so the writer) fails:
    // its ack may well be Ok. Whatever comes after must not hang.
    let _ = log.record_durable(event(1)).wait();
    assert_eq!(
        log.record_durable(event(2)).wait(),
        Err(sqlgate::audit::WriterGone)
    );
    // Sessions see it (and refuse statements: fail closed, review C8).
    assert!(!log.alive());
    drop(log);
    assert!(writer.close().is_err());
}

// ---------------------------------------------------------------- the binary

fn sqlgate(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sqlgate"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_verifies_and_names_the_first_bad_seq() {
    let (cfg, p) = clean_log("cli");
    let key = pubkey(&cfg).to_text();
    let (ok, out, err) = sqlgate(&["audit", "verify", p.to_str().unwrap(), "--public-key", &key]);
    assert!(ok, "{err}");
    assert!(
        out.contains("ok: 14 records in 1 file(s), seq 0..13"),
        "{out}"
    );
    assert!(out.contains("checkpoints: 2"), "{out}");
    // How many times the log was opened, and how (review E).
    assert!(
        out.contains("runs: 1 (1 start(s), 0 recovery(ies) after a crash)"),
        "{out}"
    );

    let mut l = lines(&p);
    l.remove(6);
    write_lines(&p, &l);
    let (ok, _, err) = sqlgate(&["audit", "verify", p.to_str().unwrap(), "--public-key", &key]);
    assert!(!ok);
    assert!(err.contains("failed at seq 6: missing: record 6"), "{err}");
    assert!(err.contains("line 7"), "{err}");

    let (ok, _, err) = sqlgate(&[
        "audit",
        "verify",
        p.to_str().unwrap(),
        "--public-key",
        "nope",
    ]);
    assert!(!ok && err.contains("`nope` is not a public key"), "{err}");
}

#[test]
fn the_cli_prints_the_public_key_and_creates_nothing() {
    let dir = temp_dir("pubkey");
    let conf = dir.join("sqlgate.toml");
    std::fs::write(
        &conf,
        r#"
[[listener]]
protocol = "postgres"
listen = "127.0.0.1:6432"
upstream = "postgres://svc:secret@127.0.0.1:5432/app"
[[agent]]
name = "bot"
password = "pw"
[policy]
rules = ["rules/"]
[audit]
path = "audit/audit.jsonl"
"#,
    )
    .unwrap();
    let (ok, _, err) = sqlgate(&["audit", "pubkey", "--config", conf.to_str().unwrap()]);
    assert!(!ok && err.contains("start sqlgate once"), "{err}");
    assert!(!dir.join("audit/signing.key").exists());
    let cfg = config(&dir.join("audit"));
    write_log(&cfg, 0);
    let (ok, out, err) = sqlgate(&["audit", "pubkey", "--config", conf.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), pubkey(&cfg).to_text());
}

#[test]
fn allow_open_skips_a_line_being_written() {
    let (cfg, p) = clean_log("live");
    let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
    std::io::Write::write_all(&mut f, br#"{"v":1,"seq":14"#).unwrap();
    let s = verify(std::slice::from_ref(&p), &[pubkey(&cfg)], true).unwrap();
    assert_eq!(s.last_seq, 13);
    assert!(matches!(
        verify(&[p], &[pubkey(&cfg)], false),
        Err(Problem::Truncated { seq: 14, .. })
    ));
}

#[test]
fn checkpoints_reach_a_syslog_anchor() {
    let dir = temp_dir("syslog");
    let socket = dir.join("log.sock");
    let server = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut cfg = config(&dir);
    cfg.anchor = Some(sqlgate::config::Anchor::Syslog(socket));
    write_log(&cfg, 2);
    let l = lines(&cfg.path);
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = Vec::new();
    while let Ok(n) = server.recv(&mut buf) {
        got.push(String::from_utf8(buf[..n].to_vec()).unwrap());
        if got.len() == 2 {
            break;
        }
    }
    // The opening checkpoint and the closing one, each the log's line.
    assert_eq!(got.len(), 2, "{got:?}");
    for m in &got {
        let record = m.strip_prefix("<110>sqlgate-audit: ").unwrap();
        assert!(l.iter().any(|x| x == record), "{m}");
    }
}

/// A local HTTP anchor: each POSTed body goes to the receiver before the
/// 204 answers it.
fn http_anchor() -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/anchor", server.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for conn in server.incoming() {
            let Ok(conn) = conn else { return };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0;
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                line.clear();
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let _ = tx.send(String::from_utf8(body).unwrap());
            let mut c = conn;
            let _ = c.write_all(
                b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    (url, rx)
}

#[test]
fn checkpoints_are_posted_to_an_http_anchor() {
    let dir = temp_dir("http-anchor");
    let (url, rx) = http_anchor();
    let mut cfg = config(&dir);
    cfg.anchor = Some(sqlgate::config::Anchor::Http(url));
    write_log(&cfg, 2);
    let l = lines(&cfg.path);
    // Closing waited for the anchor: the log's last line, the closing
    // checkpoint, was taken before the writer returned (review F).
    let got: Vec<String> = rx.try_iter().collect();
    assert!(got.len() >= 2, "{got:?}");
    assert_eq!(got.last(), l.last());
    for g in &got {
        assert!(l.iter().any(|x| x == g), "{g}");
    }
}

#[test]
fn a_missing_or_torn_anchor_and_a_retired_key_are_handled() {
    // A missing anchor beside a log with checkpoints: refused, until the
    // operator creates it.
    let (cfg, p, anchor) = anchored("anchor-missing");
    std::fs::remove_file(&anchor).unwrap();
    let before = lines(&p).len();
    let e = AuditLog::open(&cfg).err().unwrap().to_string();
    assert!(e.contains("is missing"), "{e}");
    assert_eq!(lines(&p).len(), before);
    std::fs::write(&anchor, "").unwrap();
    write_log(&cfg, 1);
    verify_anchored(&p, &pubkey(&cfg), &anchor).unwrap();
    // A torn last line in the anchor is cut before the next checkpoint.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&anchor)
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"v\":1,\"seq\":").unwrap();
    drop(f);
    // Start-up and verify read an anchor by one rule: the torn line is no line.
    verify_anchored(&p, &pubkey(&cfg), &anchor).unwrap();
    write_log(&cfg, 1);
    verify_anchored(&p, &pubkey(&cfg), &anchor).unwrap();

    // After a key change, the retired key no longer vouches for anything.
    let (mut cfg, p) = clean_log("retired");
    let old = SigningKey::load(&cfg.key).unwrap();
    cfg.previous_key = Some(cfg.key.clone());
    cfg.key = cfg.key.with_file_name("signing-2.key");
    write_log(&cfg, 1);
    // Records forged with the old key: MAC and checkpoint both valid for it.
    let l = lines(&p);
    let last: serde_json::Value = serde_json::from_str(l.last().unwrap()).unwrap();
    let mut chain = Chain::resume(
        last["seq"].as_u64().unwrap(),
        hash_line(l.last().unwrap().as_bytes()),
    );
    let mut all = l;
    let mut line = Vec::new();
    let body = serde_json::to_vec(&serde_json::json!({"kind": "approval_vote", "vote": "approve"}))
        .unwrap();
    chain.seal_mac(
        std::time::SystemTime::now(),
        &body,
        &mut line,
        old.record_mac(),
    );
    all.push(String::from_utf8(line.clone()).unwrap());
    let cp = checkpoint_body(&old, chain.head_seq().unwrap(), &chain.head(), false);
    chain.seal_mac(
        std::time::SystemTime::now(),
        &serde_json::to_vec(&cp).unwrap(),
        &mut line,
        old.record_mac(),
    );
    all.push(String::from_utf8(line).unwrap());
    write_lines(&p, &all);
    assert!(AuditLog::open(&cfg).is_err());
    // verify agrees (review A, F5): after the rotation, the old key's
    // checkpoint is a forgery even to a verifier that trusts only it.
    assert!(matches!(
        verify(std::slice::from_ref(&p), &[old.public().clone()], false),
        Err(Problem::ForgedSignature { .. })
    ));
}

#[test]
fn the_cli_says_which_records_no_anchor_line_vouches_for() {
    // Review E, F14c: past the anchor's latest line, nothing outside the
    // log shows it did not go on (a cut back to a clean close looks so).
    let (cfg, p, anchor) = anchored("anchor-tail");
    let key = pubkey(&cfg).to_text();
    let args = |a: &Path| {
        sqlgate(&[
            "audit",
            "verify",
            p.to_str().unwrap(),
            "--public-key",
            &key,
            "--anchor",
            a.to_str().unwrap(),
        ])
    };
    let (ok, out, err) = args(&anchor);
    assert!(ok && !out.contains("warning"), "{out}{err}");
    let mut a = lines(&anchor);
    a.pop();
    write_lines(&anchor, &a);
    let (ok, out, err) = args(&anchor);
    let last = lines(&p).len() - 1;
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("..{last} are past the anchor's latest line")),
        "{out}"
    );
}
