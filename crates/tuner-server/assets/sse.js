/*
 * Server-Sent Events over fetch (EventSource cannot send an Authorization header).
 */

import { ApiError, authHeaders, errorFrom, isAbort, isAuth } from './api.js';

/**
 * Reads `url` as an SSE stream and calls onEvent(name, data, id) per event. Reconnects
 * with Last-Event-ID after errors until `end` arrives or the signal aborts.
 */
export async function followEvents(url, signal, onEvent, onStatus) {
  let lastId = null;
  let backoff = 1000;
  let ended = false;
  while (!signal.aborted && !ended) {
    onStatus(lastId == null ? 'connecting' : 'reconnecting');
    try {
      const headers = authHeaders({ Accept: 'text/event-stream' });
      if (lastId != null) headers['Last-Event-ID'] = lastId;
      const response = await fetch(url, { headers, signal, cache: 'no-store' });
      if (!response.ok) {
        const err = await errorFrom(response);
        if (err.status === 401 || err.status === 404) throw err;
        throw err;
      }
      if (!response.body) throw new Error('this browser cannot stream responses');
      onStatus('live');
      backoff = 1000;
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      let name = '';
      let data = [];
      let eventId = null;
      const lineEnd = /\r\n|\r|\n/g;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let pos = 0;
        lineEnd.lastIndex = 0;
        let m;
        while ((m = lineEnd.exec(buffer)) !== null) {
          // A lone CR at the very end may be the first half of CRLF: wait for more.
          if (m[0] === '\r' && m.index === buffer.length - 1) break;
          const line = buffer.slice(pos, m.index);
          pos = lineEnd.lastIndex;
          if (line === '') {
            if (eventId != null) lastId = eventId;
            if (data.length) {
              const evName = name || 'message';
              const text = data.join('\n');
              name = '';
              data = [];
              if (evName === 'end') ended = true;
              onEvent(evName, text, lastId);
            } else {
              name = '';
            }
            eventId = null;
            continue;
          }
          if (line.charCodeAt(0) === 58) continue; // ':' comment / keep-alive
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let val = colon < 0 ? '' : line.slice(colon + 1);
          if (val.charCodeAt(0) === 32) val = val.slice(1);
          if (field === 'data') data.push(val);
          else if (field === 'event') name = val;
          else if (field === 'id') { if (!val.includes('\0')) eventId = val; }
          else if (field === 'retry') { const n = parseInt(val, 10); if (n >= 0) backoff = Math.max(250, n); }
        }
        buffer = buffer.slice(pos);
        if (ended) break;
      }
      if (ended) {
        try { reader.cancel(); } catch (_) { /* already closed */ }
      }
    } catch (e) {
      if (isAbort(e) || signal.aborted) return;
      if (isAuth(e)) throw e;
      if (e instanceof ApiError && e.status === 404) throw e;
    }
    if (ended || signal.aborted) break;
    onStatus('reconnecting');
    await sleep(backoff, signal);
    backoff = Math.min(backoff * 2, 15000);
  }
  if (ended) onStatus('ended');
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    if (signal) signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}
