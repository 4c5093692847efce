-- The definitions of PostgreSQL's own objects (OIDs below 16384, made by
-- initdb), one row per object: a key that names it and a hash of what it
-- runs. sqlgate trusts built-ins by name; a superuser can change one in
-- place, keeping its OID and name (`CREATE OR REPLACE FUNCTION
-- pg_catalog.quote_ident`, `ALTER TYPE text SET (SEND = …)`, `CREATE OR
-- REPLACE VIEW pg_catalog.pg_roles`), so the catalog compares these rows
-- with the ones scripts/gen-pg-builtins.sh read from a fresh initdb
-- (src/classify/pg/builtin_defs.txt). Names, not OIDs: initdb's OIDs from
-- 10000 up depend on the machine's locales. Read with search_path =
-- pg_catalog, so names print the same whatever the login's setting.
-- Shared by the catalog (src/catalog/mod.rs) and the script: one text.
BEGIN READ ONLY;
SET LOCAL search_path = pg_catalog;
WITH ext AS (
  SELECT objid FROM pg_depend
  WHERE deptype = 'e' AND refclassid = 'pg_extension'::regclass AND classid = 'pg_proc'::regclass)
SELECT k, left(md5(v), 12) FROM (
  SELECT 'f ' || p.oid::regprocedure::text AS k,
    concat_ws('|', l.lanname, p.prosrc, p.probin, p.prosecdef, p.proconfig::text,
      p.prosupport::regprocedure::text, p.provolatile, p.proisstrict, p.prokind,
      p.proleakproof, p.proretset, p.prorettype::regtype::text, pg_get_function_sqlbody(p.oid),
      a.aggtransfn::regprocedure::text, a.aggfinalfn::regprocedure::text,
      a.aggcombinefn::regprocedure::text, a.aggserialfn::regprocedure::text,
      a.aggdeserialfn::regprocedure::text, a.aggmtransfn::regprocedure::text,
      a.aggminvtransfn::regprocedure::text, a.aggmfinalfn::regprocedure::text,
      a.aggsortop::regoperator::text, a.aggfinalmodify, a.aggmfinalmodify) AS v
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
  LEFT JOIN pg_aggregate a ON a.aggfnoid = p.oid
  WHERE p.oid < 16384 AND p.oid NOT IN (SELECT objid FROM ext)
  UNION ALL
  SELECT 't ' || t.oid::regtype::text,
    concat_ws('|', t.typinput::regprocedure::text, t.typoutput::regprocedure::text,
      t.typreceive::regprocedure::text, t.typsend::regprocedure::text,
      t.typmodin::regprocedure::text, t.typmodout::regprocedure::text,
      t.typanalyze::regprocedure::text, t.typsubscript::regprocedure::text)
  FROM pg_type t WHERE t.oid < 16384
  UNION ALL
  SELECT 'o ' || o.oid::regoperator::text,
    concat_ws('|', o.oprcode::regprocedure::text, o.oprrest::regprocedure::text,
      o.oprjoin::regprocedure::text, o.oprnegate::regoperator::text, o.oprcom::regoperator::text)
  FROM pg_operator o WHERE o.oid < 16384
  UNION ALL
  SELECT 'c ' || c.castsource::regtype::text || ' > ' || c.casttarget::regtype::text,
    concat_ws('|', c.castfunc::regprocedure::text, c.castcontext, c.castmethod)
  FROM pg_cast c WHERE c.oid < 16384
  UNION ALL
  SELECT 'r ' || r.ev_class::regclass::text || ' ' || r.rulename, pg_get_ruledef(r.oid)
  FROM pg_rewrite r WHERE r.ev_class < 16384
  UNION ALL
  -- Constraints, triggers and policies on built-in types and relations: a
  -- user's CHECK on information_schema.cardinal_number runs in its views.
  SELECT 'k ' || c.conname || ' on ' || coalesce(nullif(c.contypid, 0)::regtype::text,
    c.conrelid::regclass::text), pg_get_constraintdef(c.oid)
  FROM pg_constraint c
  WHERE c.contypid BETWEEN 1 AND 16383 OR c.conrelid BETWEEN 1 AND 16383
  UNION ALL
  SELECT 'g ' || t.tgname || ' on ' || t.tgrelid::regclass::text, pg_get_triggerdef(t.oid)
  FROM pg_trigger t WHERE t.tgrelid < 16384
  UNION ALL
  SELECT 'p ' || p.polname || ' on ' || p.polrelid::regclass::text,
    concat_ws('|', p.polcmd, p.polpermissive, p.polroles::text,
      pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid))
  FROM pg_policy p WHERE p.polrelid < 16384
  UNION ALL
  -- Column defaults, domain defaults, indexes (their expressions and
  -- predicates, which the planner folds) and extended statistics (which
  -- ANALYZE computes) on built-in types and relations. Not the indexes of
  -- TOAST tables: their names hold OIDs that differ between machines.
  SELECT 'd ' || a.adrelid::regclass::text || '.' || quote_ident(att.attname),
    pg_get_expr(a.adbin, a.adrelid)
  FROM pg_attrdef a
  JOIN pg_attribute att ON att.attrelid = a.adrelid AND att.attnum = a.adnum
  WHERE a.adrelid < 16384
  UNION ALL
  SELECT 'y ' || t.oid::regtype::text, t.typdefault
  FROM pg_type t WHERE t.oid < 16384 AND t.typdefault IS NOT NULL
  UNION ALL
  SELECT 'i ' || i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
  WHERE i.indrelid < 16384 AND c.relkind <> 't'
  UNION ALL
  SELECT 'x ' || s.stxname || ' on ' || s.stxrelid::regclass::text,
    pg_get_statisticsobjdef(s.oid)
  FROM pg_statistic_ext s WHERE s.stxrelid < 16384
) d ORDER BY k COLLATE "C";
COMMIT;
