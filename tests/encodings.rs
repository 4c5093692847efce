//! sqlgate's reading of each client encoding against the server's own:
//! every byte sequence that can be a character (every high byte of the
//! single-byte encodings, every two-byte EUC pair, EUC_JP's 0x8E and 0x8F
//! forms) is converted by PostgreSQL (`convert_from`) and decoded by
//! `sqlgate::encoding`. Where both read one, they must read the same
//! character: a difference is a name sqlgate would decide on that the server
//! does not use (review 25, F2). Where only one reads it, either the server
//! refuses the statement or sqlgate does: both fail closed.

mod support;

use support::PgServer;

const SINGLE_BYTE: &[&str] = &[
    "LATIN1",
    "LATIN2",
    "LATIN3",
    "LATIN4",
    "LATIN5",
    "LATIN6",
    "LATIN7",
    "LATIN8",
    "LATIN9",
    "LATIN10",
    "ISO_8859_5",
    "ISO_8859_6",
    "ISO_8859_7",
    "ISO_8859_8",
    "WIN866",
    "WIN874",
    "WIN1250",
    "WIN1251",
    "WIN1252",
    "WIN1253",
    "WIN1254",
    "WIN1255",
    "WIN1256",
    "WIN1257",
    "WIN1258",
    "KOI8R",
    "KOI8U",
];

const HIGH: &str = "generate_series(161, 254)";

#[test]
fn every_character_reads_as_postgresql_reads_it() {
    let pg = PgServer::shared();
    let db = pg.unique_database("conversions");
    pg.psql(
        &db,
        "CREATE FUNCTION try_conv(b bytea, e name) RETURNS text LANGUAGE plpgsql AS $$
         BEGIN RETURN convert_from(b, e); EXCEPTION WHEN others THEN RETURN NULL; END $$;
         CREATE FUNCTION h(i int) RETURNS text IMMUTABLE LANGUAGE sql AS $$ SELECT lpad(to_hex(i), 2, '0') $$;",
    );
    let mut cases: Vec<(&str, String)> = SINGLE_BYTE
        .iter()
        .map(|e| {
            (
                *e,
                "SELECT decode(h(i), 'hex') FROM generate_series(128, 255) i".to_owned(),
            )
        })
        .collect();
    let pairs = format!("SELECT decode(h(i) || h(j), 'hex') FROM {HIGH} i, {HIGH} j");
    cases.push(("EUC_KR", pairs.clone()));
    cases.push(("EUC_CN", pairs.clone()));
    cases.push(("EUC_JP", pairs));
    cases.push((
        "EUC_JP",
        "SELECT decode('8e' || h(i), 'hex') FROM generate_series(161, 223) i".to_owned(),
    ));
    cases.push((
        "EUC_JP",
        format!("SELECT decode('8f' || h(i) || h(j), 'hex') FROM {HIGH} i, {HIGH} j"),
    ));
    let mut differ = Vec::new();
    let mut compared = 0;
    for (name, sequences) in &cases {
        let enc = sqlgate::encoding::lookup(name).unwrap();
        let out = pg.psql(
            &db,
            &format!(
                "SELECT encode(b, 'hex') || ':' || coalesce(encode(convert_to(try_conv(b, '{name}'), 'UTF8'), 'hex'), '-')
                 FROM ({sequences}) s(b)"
            ),
        );
        for line in out.lines() {
            let (bytes, server) = line.split_once(':').unwrap();
            let bytes = hex::decode(bytes).unwrap();
            let server =
                (server != "-").then(|| String::from_utf8(hex::decode(server).unwrap()).unwrap());
            let ours = enc.decode(&bytes).map(|c| c.into_owned());
            if let (Some(s), Some(o)) = (&server, &ours) {
                compared += 1;
                if s != o {
                    differ.push(format!(
                        "{name} {}: server {s:?}, sqlgate {o:?}",
                        hex::encode(&bytes)
                    ));
                }
            }
        }
    }
    assert!(compared > 20_000, "only {compared} characters compared");
    assert!(
        differ.is_empty(),
        "{} differ:\n{}",
        differ.len(),
        differ.join("\n")
    );
}
