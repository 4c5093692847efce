-- Runs once, when the postgres container initialises an empty data volume
-- (as the superuser, through psql). To run it again: docker compose down -v.
--
-- `svc` is the login sqlgate uses upstream; it owns the database but is not
-- a superuser. Its password must match the upstream URL in
-- examples/docker/sqlgate.toml. The image stores it as SCRAM-SHA-256 and
-- requires SCRAM for TCP logins.
CREATE ROLE svc LOGIN PASSWORD 'svc-docker-pw';
CREATE DATABASE app OWNER svc;

\connect app

SET ROLE svc;
CREATE TABLE customers (
    id    serial PRIMARY KEY,
    name  text NOT NULL,
    email text
);
INSERT INTO customers (name, email) VALUES
    ('Ada Lovelace',    'ada@example.com'),
    ('Alan Turing',     'alan@example.com'),
    ('Grace Hopper',    'grace@example.com'),
    ('Edsger Dijkstra', 'edsger@example.com'),
    ('Barbara Liskov',  'barbara@example.com');
RESET ROLE;
