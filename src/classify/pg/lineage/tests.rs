use super::{lineage, Columns, Lineage, Masks, Source};
use std::sync::Arc;

/// `users.ssn` (mask 0) and `users.email` (mask 1); tables compared by
/// their last part, as restrictive rules do.
struct TestMasks;

fn last(t: &str) -> &str {
    t.rsplit('.').next().unwrap_or(t)
}

impl Masks for TestMasks {
    fn table(&self, table: &str) -> bool {
        last(table) == "users"
    }
    fn column(&self, table: &str, column: &str) -> Option<usize> {
        match (last(table), column) {
            ("users", "ssn") => Some(0),
            ("users", "email") => Some(1),
            _ => None,
        }
    }
}

struct TestColumns;

impl Columns for TestColumns {
    fn columns(&self, table: &str) -> Option<Arc<[String]>> {
        let c: &[&str] = match last(table) {
            "users" => &["id", "name", "ssn", "email"],
            "orders" => &["id", "user_id", "total"],
            _ => return None,
        };
        Some(c.iter().map(|s| s.to_string()).collect())
    }
}

fn read(sql: &str) -> Lineage {
    let parsed = pg_query::parse(sql, 0).expect("parses");
    let raw = &parsed.protobuf.stmts[0];
    let tree = serde_json::to_value(raw.stmt.as_ref().unwrap()).unwrap();
    let mut tables = Vec::new();
    super::each_range_var(&tree, &mut |rv| tables.push(super::table_name(rv)));
    lineage(&tree, &tables, &TestMasks, &TestColumns)
}

fn ssn() -> Option<Source> {
    Some(Source {
        table: "users".into(),
        column: "ssn".into(),
        mask: 0,
        output: "ssn".into(),
    })
}

/// The masked positions of a statement that passes.
fn masked(sql: &str) -> Vec<Option<usize>> {
    match read(sql) {
        Lineage::Columns(c) => c.into_iter().map(|s| s.map(|s| s.mask)).collect(),
        other => panic!("{sql}: {other:?}"),
    }
}

fn refused(sql: &str) -> String {
    match read(sql) {
        Lineage::Refused(r) => r.why,
        other => panic!("{sql} was not refused: {other:?}"),
    }
}

#[test]
fn statements_without_masked_tables_are_clean() {
    assert_eq!(read("SELECT * FROM orders WHERE total > 3"), Lineage::Clean);
    assert_eq!(read("SELECT 1"), Lineage::Clean);
    assert_eq!(read("DELETE FROM orders"), Lineage::Clean);
}

#[test]
fn pass_throughs_are_masked_at_their_positions() {
    assert_eq!(masked("SELECT id, ssn FROM users"), [None, Some(0)]);
    assert_eq!(
        masked("SELECT ssn AS s, name FROM users u"),
        [Some(0), None]
    );
    assert_eq!(masked("SELECT u.ssn FROM public.users u"), [Some(0)]);
    assert_eq!(
        masked("SELECT * FROM users"),
        [None, None, Some(0), Some(1)]
    );
    assert_eq!(
        masked("SELECT o.total, u.* FROM orders o JOIN users u ON u.id = o.user_id"),
        [None, None, None, Some(0), Some(1)]
    );
    assert_eq!(
        masked("SELECT s FROM (SELECT ssn AS s FROM users) t"),
        [Some(0)]
    );
    assert_eq!(
        masked("SELECT x FROM (SELECT ssn FROM users) t(x)"),
        [Some(0)]
    );
    assert_eq!(
        masked("WITH c AS (SELECT id, ssn FROM users) SELECT c.ssn, id FROM c"),
        [Some(0), None]
    );
    assert_eq!(
        masked("SELECT ssn FROM users UNION ALL SELECT 'x'"),
        [Some(0)]
    );
    assert_eq!(masked("SELECT count(*) FROM users"), [None]);
    assert_eq!(
        masked("SELECT name FROM users WHERE id = 3 ORDER BY name LIMIT 5"),
        [None]
    );
    let Lineage::Columns(c) = read("SELECT ssn FROM users") else {
        panic!()
    };
    assert_eq!(c, [ssn()]);
}

#[test]
fn derived_values_are_refused() {
    for sql in [
        "SELECT lower(ssn) FROM users",
        "SELECT ssn::int FROM users",
        "SELECT ssn || '' FROM users",
        "SELECT count(ssn) FROM users",
        "SELECT string_agg(email, ',') FROM users",
        "SELECT (SELECT ssn FROM users LIMIT 1)",
        "SELECT x FROM (SELECT upper(ssn) AS x FROM users) t",
        "SELECT CASE WHEN true THEN ssn END FROM users",
        "SELECT ARRAY[ssn] FROM users",
        "SELECT ROW(ssn) FROM users",
        "SELECT json_build_object('s', ssn) FROM users",
    ] {
        refused(sql);
    }
}

#[test]
fn whole_rows_are_refused() {
    for sql in [
        "SELECT u FROM users u",
        "SELECT row_to_json(u) FROM users u",
        "SELECT u::text FROM users u",
        "SELECT to_jsonb(users) FROM users",
        "SELECT (u).ssn FROM users u",
        "SELECT count(u.*) FROM users u",
        "SELECT t FROM (SELECT * FROM users) t",
    ] {
        refused(sql);
    }
}

#[test]
fn inference_is_refused() {
    for sql in [
        "SELECT id FROM users WHERE ssn LIKE '1%'",
        "SELECT id FROM users WHERE ssn > '5'",
        "SELECT id FROM users u JOIN orders o ON o.total = length(u.ssn)",
        "SELECT id FROM users GROUP BY ssn, id",
        "SELECT ssn FROM users GROUP BY 1",
        "SELECT id FROM users ORDER BY ssn",
        "SELECT ssn AS s FROM users ORDER BY s",
        "SELECT ssn FROM users ORDER BY 1",
        "SELECT DISTINCT ssn FROM users",
        "SELECT DISTINCT ON (ssn) id FROM users",
        "SELECT id, row_number() OVER (ORDER BY ssn) FROM users",
        "SELECT id FROM users HAVING max(ssn) > '5'",
        "SELECT id FROM orders WHERE user_id IN (SELECT id FROM users WHERE ssn = '1')",
        "SELECT id FROM orders WHERE EXISTS (SELECT 1 FROM users WHERE ssn = '1')",
        "SELECT id FROM orders WHERE 'x' IN (SELECT ssn FROM users)",
        "SELECT ssn FROM users UNION SELECT 'x'",
        "SELECT ssn FROM users INTERSECT SELECT 'x'",
        "SELECT ssn FROM users EXCEPT SELECT 'x'",
        "SELECT ssn FROM users UNION ALL SELECT email FROM users",
        "SELECT id FROM users LIMIT length(ssn)",
        "SELECT id FROM users u JOIN users v USING (ssn)",
        "SELECT * FROM users NATURAL JOIN orders",
    ] {
        refused(sql);
    }
}

#[test]
fn what_cannot_be_placed_is_refused() {
    for sql in [
        "SELECT * FROM users JOIN orders USING (id)",
        "SELECT * FROM users, generate_series(1, 3) g",
        "SELECT * FROM generate_series(1, 3) g, users",
        "WITH RECURSIVE r AS (SELECT ssn FROM users UNION ALL SELECT ssn FROM r) SELECT * FROM r",
        "SELECT ssn INTO copy FROM users",
        "COPY users TO STDOUT",
        "INSERT INTO orders (total) SELECT length(ssn) FROM users",
        "UPDATE orders SET total = 1 FROM users WHERE users.ssn = '1'",
        "EXPLAIN SELECT ssn FROM users",
        "CREATE TABLE x AS SELECT ssn FROM users",
        "DECLARE c CURSOR FOR SELECT ssn FROM users",
    ] {
        refused(sql);
    }
}

#[test]
fn tables_reached_other_than_by_name_are_refused() {
    let parsed = pg_query::parse("SELECT * FROM customer_view", 0).unwrap();
    let tree = serde_json::to_value(parsed.protobuf.stmts[0].stmt.as_ref().unwrap()).unwrap();
    let tables = vec!["customer_view".to_string(), "users".to_string()];
    let r = lineage(&tree, &tables, &TestMasks, &TestColumns);
    assert!(matches!(r, Lineage::Refused(_)), "{r:?}");
}

#[test]
fn without_column_lists_named_columns_still_read() {
    let read = |sql: &str| {
        let parsed = pg_query::parse(sql, 0).expect("parses");
        let tree = serde_json::to_value(parsed.protobuf.stmts[0].stmt.as_ref().unwrap()).unwrap();
        let mut tables = Vec::new();
        super::each_range_var(&tree, &mut |rv| tables.push(super::table_name(rv)));
        lineage(&tree, &tables, &TestMasks, &super::NoColumns)
    };
    let Lineage::Columns(c) =
        read("SELECT id, ssn, o.total FROM users u JOIN orders o ON o.user_id = u.id")
    else {
        panic!()
    };
    assert_eq!(c, [None, ssn(), None]);
    for sql in [
        "SELECT * FROM users",
        "SELECT u.* FROM users u",
        "SELECT u FROM users u",
        "SELECT id FROM users WHERE ssn = '1'",
        "SELECT upper(email) FROM users",
    ] {
        assert!(matches!(read(sql), Lineage::Refused(_)), "{sql}");
    }
}

/// Attack review 2026-12-06 (masking): each of these passed plaintext.
#[test]
fn the_attack_reviews_bypasses_are_refused() {
    let no_cols = |sql: &str| {
        let parsed = pg_query::parse(sql, 0).expect("parses");
        let tree = serde_json::to_value(parsed.protobuf.stmts[0].stmt.as_ref().unwrap()).unwrap();
        let mut tables = Vec::new();
        super::each_range_var(&tree, &mut |rv| tables.push(super::table_name(rv)));
        lineage(&tree, &tables, &TestMasks, &super::NoColumns)
    };
    for sql in [
        // F1: column aliases rename the masked column.
        "SELECT a FROM users u(a,b,z) WHERE z LIKE '1%'",
        // F2: LATERAL on the right of an explicit JOIN.
        "SELECT x FROM users u JOIN LATERAL unnest(array[u.ssn]) x ON true",
        "SELECT u.id, x.v FROM users u CROSS JOIN LATERAL ROWS FROM (upper(u.ssn)) x(v)",
        // F3: XMLTABLE reading a masked column.
        "SELECT x.v FROM users u, XMLTABLE('/a' PASSING xmlelement(name a, u.ssn) COLUMNS v text PATH '.') x",
        // F4: subqueries in clauses lost the CTEs.
        "WITH t AS (SELECT ssn FROM users) SELECT x FROM unnest(ARRAY(SELECT ssn FROM t)) AS x",
        "WITH t AS (SELECT ssn FROM users) VALUES ((SELECT string_agg(ssn, ',') FROM t))",
        "WITH t AS (SELECT id, ssn FROM users) SELECT id FROM orders WHERE EXISTS (SELECT 1 FROM t WHERE ssn LIKE '1%' AND t.id = orders.user_id)",
        "WITH t AS (SELECT ssn FROM users) SELECT 1 FROM orders o JOIN orders p ON (SELECT count(*) FROM t WHERE ssn > '5') > 0 LIMIT 1",
        // F5: a data-modifying CTE writing masked values.
        "WITH t AS (SELECT id, ssn FROM users), w AS (INSERT INTO orders(id, user_id, total) SELECT 100+id, id, length(ssn) FROM t RETURNING 1) SELECT count(*) FROM w",
        // Unplaceable references.
        "SELECT nosuch.ssn FROM users u",
    ] {
        assert!(matches!(read(sql), Lineage::Refused(_)), "with columns: {sql}: {:?}", read(sql));
        assert!(matches!(no_cols(sql), Lineage::Refused(_)), "without: {sql}: {:?}", no_cols(sql));
    }
    // With column lists, aliases rename positionally and stay masked;
    // without, they are refused.
    assert_eq!(masked("SELECT z FROM users AS u(x,y,z)"), [Some(0)]);
    assert!(matches!(
        no_cols("SELECT z FROM users AS u(x,y,z)"),
        Lineage::Refused(_)
    ));
    // A LATERAL pass-through on the right of a JOIN stays masked.
    assert_eq!(
        masked("SELECT t.s FROM users u JOIN LATERAL (SELECT u.ssn AS s) t ON true"),
        [Some(0)]
    );
    // Output aliases in ORDER BY are the result's columns.
    assert_eq!(masked("SELECT name AS n FROM users ORDER BY n"), [None]);
    assert_eq!(
        masked("SELECT id AS a, name FROM users UNION ALL SELECT 1, 'x' ORDER BY a"),
        [None, None]
    );
    // A correlated reference from a derived table to the enclosing query.
    assert_eq!(
        masked("SELECT (SELECT count(*) FROM (SELECT o.id) t) FROM orders o, users u"),
        [None]
    );
}

/// Attack review 2026-12-06, round 2: a VALUES branch of a set operation
/// read as no columns at all dropped every mask.
#[test]
fn set_operations_with_values_keep_their_masks() {
    assert_eq!(
        masked("SELECT id, ssn FROM users UNION ALL VALUES (0, 'x')"),
        [None, Some(0)]
    );
    assert_eq!(
        masked("VALUES (0, 'x') UNION ALL SELECT id, ssn FROM users"),
        [None, Some(0)]
    );
    for sql in [
        "SELECT ssn FROM users INTERSECT VALUES ('123-45-6789')",
        "SELECT upper(t.ssn) FROM (SELECT ssn FROM users UNION ALL VALUES ('x')) t",
        "WITH t AS (SELECT id, ssn FROM users UNION ALL VALUES (0, 'x')) SELECT * FROM t WHERE t.ssn LIKE '1%'",
        "SELECT t.* FROM (SELECT ssn FROM users UNION ALL VALUES ('x')) t ORDER BY t.ssn DESC",
        "SELECT t.nosuch FROM (SELECT ssn FROM users) t",
    ] {
        assert!(matches!(read(sql), Lineage::Refused(_)), "{sql}: {:?}", read(sql));
    }
}
