// sqlgate approval page. Every value shown comes from the JSON API and is
// inserted with textContent, never parsed as markup: the statement is SQL written
// by an AI agent and may contain markup. The bearer token lives in
// sessionStorage and travels only in the Authorization header.
'use strict';

(function () {
  const TOKEN_KEY = 'sqlgate.approver-token';
  const REFRESH_MS = 5000;
  const id = decodeURIComponent(location.pathname.split('/').pop() || '');
  const api = '/v1/approvals/' + encodeURIComponent(id);
  const $ = (name) => document.getElementById(name);
  let refreshTimer = null;
  let busy = false;

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  }

  function say(text, isError) {
    const m = $('message');
    m.textContent = text;
    m.className = isError ? 'error' : '';
  }

  async function call(method, path, body) {
    const headers = { Authorization: 'Bearer ' + token() };
    const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (e) {
      return { status: 0, data: { error: 'cannot reach sqlgate: ' + e.message } };
    }
    let data = null;
    try {
      data = await resp.json();
    } catch (_) {
      data = null;
    }
    return { status: resp.status, data };
  }

  function errorText(r) {
    const detail = r.data && typeof r.data.error === 'string' ? r.data.error : 'unexpected answer';
    return r.status ? 'HTTP ' + r.status + ': ' + detail : detail;
  }

  // Characters that would reorder or hide text (bidi embeddings, overrides,
  // isolates and marks, zero-width ones) and control characters other than
  // newline and tab are shown as \u{..} escapes, as sqlgate's CLI and chat
  // messages show them: the text reads as what will run.
  const HIDING = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164\u00a0\u1680\u2000-\u200a\u202f\u205f\u2800\u3000\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb]|\udb40[\udc00-\uddef]/g;
  function visible(value) {
    return String(value).replace(HIDING, (c) => '\\u{' + c.codePointAt(0).toString(16) + '}');
  }

  function text(name, value) {
    $(name).textContent = value === null || value === undefined || value === '' ? '—' : visible(value);
  }

  function list(parent, items, make) {
    parent.replaceChildren();
    for (const item of items) {
      parent.appendChild(make(item));
    }
  }

  function el(tag, value) {
    const e = document.createElement(tag);
    e.textContent = visible(value);
    return e;
  }

  function unique(values) {
    return Array.from(new Set(values));
  }

  function until(iso) {
    const ms = Date.parse(iso) - Date.now();
    if (!(ms > 0)) {
      return iso;
    }
    const s = Math.round(ms / 1000);
    const left = s >= 120 ? Math.round(s / 60) + ' min' : s + ' s';
    return iso + ' (in ' + left + ')';
  }

  function outcomeText(r) {
    const o = r.outcome || {};
    switch (o.outcome) {
      case 'approved': return 'Approved by ' + (o.by || []).join(', ') + '.';
      case 'denied': return 'Denied by ' + o.by + (o.reason ? ': ' + o.reason : '.');
      case 'timed_out': return 'Nobody decided in time: denied.';
      case 'withdrawn': return 'Withdrawn: ' + o.reason;
      default: return '';
    }
  }

  function show(r) {
    const statements = Array.isArray(r.statements) ? r.statements : [];
    text('state', r.state);
    text('f-id', r.id);
    text('f-agent', r.agent);
    text('f-database', r.database);
    text('f-session', r.session);
    text('f-client', r.client);
    text('f-rule', r.rule);
    text('f-reason', r.reason);
    text('f-classes', unique(statements.flatMap((s) => s.classes || [])).join(', '));
    text('f-tables', unique(statements.flatMap((s) => s.tables || [])).join(', '));
    text('f-approvers', (r.approver_groups || []).join(', ') + ' (quorum ' + r.quorum + ')');
    text('f-created', r.created);
    text('f-expires', r.state === 'pending' ? until(r.expires) : r.expires);
    text('f-sha256', r.sql_sha256);
    list($('statements'), statements, (s) => {
      const pre = document.createElement('pre');
      pre.appendChild(el('code', s.text));
      pre.className = 'statement';
      return pre;
    });
    const note = r.session_note || r.names_note;
    $('session-note').hidden = !note;
    $('session-note').textContent = visible(note || '');
    const string = Array.isArray(r.string) ? r.string : [];
    $('string-box').hidden = string.length === 0;
    list($('string'), string, (s) => {
      const li = document.createElement('li');
      li.appendChild(el('strong', s.held ? 'held: ' : 'runs with it: '));
      li.appendChild(el('code', s.text));
      return li;
    });
    const params = Array.isArray(r.parameters) ? r.parameters : [];
    $('parameters-box').hidden = params.length === 0;
    list($('parameters'), params, (p) => el('li', p === null ? 'NULL' : p));
    const votes = Array.isArray(r.votes) ? r.votes : [];
    list($('votes'), votes.length ? votes : [null], (v) => el('li', v === null ? 'none yet'
      : (v.approve ? 'approve' : 'deny') + ' by ' + v.approver + ' via ' + v.channel + ' at ' + v.at
        + (v.reason ? ': ' + v.reason : '')));
    $('outcome').textContent = visible(outcomeText(r));
    $('decide').hidden = r.state !== 'pending';
    $('signin').hidden = true;
    $('request').hidden = false;
  }

  async function load(quiet) {
    const r = await call('GET', api);
    if (r.status === 200 && r.data) {
      show(r.data);
      if (!quiet) {
        say('', false);
      }
      schedule(r.data.state === 'pending');
      return;
    }
    say(errorText(r), true);
    if (r.status === 401) {
      signOut(false);
    }
  }

  function schedule(pending) {
    clearTimeout(refreshTimer);
    if (pending) {
      refreshTimer = setTimeout(() => {
        if (!busy && !document.hidden && token()) {
          load(true);
        } else {
          schedule(true);
        }
      }, REFRESH_MS);
    }
  }

  async function decide(verb) {
    if (busy) {
      return;
    }
    busy = true;
    $('approve').disabled = true;
    $('deny').disabled = true;
    say(verb === 'approve' ? 'Approving…' : 'Denying…', false);
    const reason = $('reason').value.trim();
    const r = await call('POST', '/v1/page/approvals/' + encodeURIComponent(id) + '/' + verb, reason ? { reason } : {});
    busy = false;
    $('approve').disabled = false;
    $('deny').disabled = false;
    if (r.status === 200 && r.data) {
      show(r.data);
      const done = outcomeText(r.data);
      say(done || 'Your vote is recorded; the request waits for more approvals.', false);
      schedule(r.data.state === 'pending');
    } else {
      say(errorText(r), true);
    }
  }

  function signOut(clearMessage) {
    clearTimeout(refreshTimer);
    sessionStorage.removeItem(TOKEN_KEY);
    $('request').hidden = true;
    $('signin').hidden = false;
    $('token').value = '';
    if (clearMessage) {
      say('', false);
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('signin').addEventListener('submit', (e) => {
      e.preventDefault();
      const t = $('token').value.trim();
      if (!t) {
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, t);
      $('token').value = '';
      load(false);
    });
    $('decide').addEventListener('submit', (e) => e.preventDefault());
    $('approve').addEventListener('click', () => decide('approve'));
    $('deny').addEventListener('click', () => decide('deny'));
    $('signout').addEventListener('click', () => signOut(true));
    if (!/^[A-Za-z0-9_-]+$/.test(id)) {
      say('this link names no approval request', true);
      $('signin').hidden = true;
      return;
    }
    if (token()) {
      load(false);
    }
  });
})();
