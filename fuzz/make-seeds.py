#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ (run from anywhere).

Seeds are the real shapes: the startup packets and messages psql and
tokio-postgres send, SCRAM exchanges as postgres-protocol writes them, the
SQL of tests/classify_cases.rs and tests/classify_bypasses.rs, the shipped
rules and the example config. Re-run after changing those; fuzz.sh does not
need it (the corpus is committed)."""
import base64, hashlib, pathlib, re, struct

root = pathlib.Path(__file__).resolve().parent.parent
corpus = root / "fuzz" / "corpus"


def put(target, name, data):
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


def msg(tag, body):
    return tag + struct.pack(">i", len(body) + 4) + body


def cstr(s):
    return s.encode() + b"\0"


def startup(minor, params):
    body = struct.pack(">i", (3 << 16) | minor)
    for k, v in params:
        body += cstr(k) + cstr(v)
    body += b"\0"
    return struct.pack(">i", len(body) + 4) + body


# --- startup: psql, tokio-postgres, protocol 3.2 with extensions, and the requests
psql = [("user", "bot"), ("database", "app"), ("application_name", "psql"),
        ("client_encoding", "UTF8")]
tokio = [("client_encoding", "UTF8"), ("user", "bot"), ("database", "app"),
         ("application_name", "tokio-postgres")]
put("startup", "psql", startup(0, psql))
put("startup", "tokio-postgres", startup(0, tokio))
put("startup", "v3.2-pq-ext", startup(2, psql + [("_pq_.test", "1")]))
put("startup", "options", startup(0, [("user", "bot"), ("options", "-c search_path=x")]))
put("startup", "ssl-request", struct.pack(">ii", 8, 80877103))
put("startup", "gssenc-request", struct.pack(">ii", 8, 80877104))
put("startup", "cancel-request", struct.pack(">iiii", 16, 80877102, 4242, -17))
put("startup", "v2", struct.pack(">ii", 8, 2 << 16))

# --- frontend: one message per file, as drivers send them
q = msg(b"Q", cstr("SELECT id, name FROM items WHERE id = 1"))
parse = msg(b"P", cstr("") + cstr("SELECT $1::int4, $2") + struct.pack(">hii", 2, 23, 0))
parse_named = msg(b"P", cstr("s0") + cstr("INSERT INTO t VALUES ($1)") + struct.pack(">h", 0))
bind = msg(b"B", cstr("") + cstr("s0") + struct.pack(">hh", 1, 1) + struct.pack(">h", 2)
           + struct.pack(">i", 4) + struct.pack(">i", 42) + struct.pack(">i", -1)
           + struct.pack(">hh", 1, 1))
bind_text = msg(b"B", cstr("p1") + cstr("") + struct.pack(">hhhh", 2, 0, 1, 2)
                + struct.pack(">i", 2) + b"42" + struct.pack(">i", 3) + b"abc" + struct.pack(">h", 0))
execute = msg(b"E", cstr("") + struct.pack(">i", 0))
execute_named = msg(b"E", cstr("p1") + struct.pack(">i", 100))
describe_s = msg(b"D", b"S" + cstr("s0"))
describe_p = msg(b"D", b"P" + cstr(""))
close_s = msg(b"C", b"S" + cstr("s0"))
close_p = msg(b"C", b"P" + cstr("p1"))
sync, flush, term = msg(b"S", b""), msg(b"H", b""), msg(b"X", b"")
client_first = b"n,,n=,r=rOprNGfwEbeRWgbNEkqO"
sasl_init = msg(b"p", cstr("SCRAM-SHA-256") + struct.pack(">i", len(client_first)) + client_first)
sasl_resp = msg(b"p", b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF,p=" +
                base64.b64encode(bytes(32)))
for name, m in [("query", q), ("parse", parse), ("parse-named", parse_named), ("bind-binary", bind),
                ("bind-text", bind_text), ("execute", execute), ("execute-named", execute_named),
                ("describe-statement", describe_s), ("describe-portal", describe_p),
                ("close-statement", close_s), ("close-portal", close_p), ("sync", sync),
                ("sasl-initial", sasl_init), ("sasl-response", sasl_resp)]:
    put("frontend", name, m)

# --- frame: limits (max_message, stream_above as u16s) then a pipeline
limits = struct.pack(">HH", 8192, 256)
put("frame", "extended-pipeline", limits + parse + bind + describe_p + execute + sync)
put("frame", "simple", limits + q + term)
put("frame", "copy-data", limits + msg(b"d", b"x" * 600) + msg(b"c", b""))
put("frame", "partial", limits + (parse + bind)[:-3])
put("frame", "flush", limits + parse_named + flush)

# --- scram: client-first \0 client-final (@NONCE@ becomes the server's nonce)
proof = base64.b64encode(hashlib.sha256(b"fuzz").digest()).decode()
put("scram", "postgres-protocol", f"n,,n=,r=rOprNGfwEbeRWgbNEkqO\0c=biws,r=@NONCE@,p={proof}")
put("scram", "psql", f"n,,n=bot,r=0123456789abcdef\0c=biws,r=@NONCE@,p={proof}")
put("scram", "y-flag", f"y,,n=,r=abc\0c=eSws,r=@NONCE@,p={proof}")
put("scram", "channel-binding", f"p=tls-server-end-point,,n=,r=abc\0c=cD10bHM,r=@NONCE@,p={proof}")
put("scram", "extensions", f"n,,n=,r=abc,x=ext\0c=biws,r=@NONCE@,x=1,p={proof}")

# --- classify: every SQL string of the classification tests
def rust_strings(text):
    for m in re.finditer(r'r(#*)"(.*?)"\1|"((?:[^"\\]|\\.)*)"', text, re.S):
        if m.group(2) is not None:
            yield m.group(2)
            continue
        s = m.group(3)
        s = re.sub(r"\\\n\s*", "", s)
        s = re.sub(r"\\u\{([0-9a-fA-F]+)\}", lambda x: chr(int(x.group(1), 16)), s)
        s = (s.replace("\\\\", "\0BS\0").replace('\\"', '"').replace("\\'", "'")
             .replace("\\n", "\n").replace("\\t", "\t").replace("\\r", "\r")
             .replace("\\0", "\x00").replace("\0BS\0", "\\"))
        yield s

sqlish = re.compile(r"^\s*(\(|/\*|--|[A-Za-z]+\s)", re.S)
seen = set()
for f in ["tests/classify_cases.rs", "tests/classify_bypasses.rs"]:
    for s in rust_strings((root / f).read_text()):
        if len(s) >= 6 and "\x00" not in s and sqlish.match(s) and s not in seen:
            seen.add(s)
            put("classify", hashlib.sha1(s.encode()).hexdigest()[:16], s)

# --- rules and config: the shipped files
put("rules", "default.toml", (root / "rules/default.toml").read_bytes())
put("config", "example.toml", (root / "examples/sqlgate.toml").read_bytes())
print({d.name: len(list(d.iterdir())) for d in sorted(corpus.iterdir())})
