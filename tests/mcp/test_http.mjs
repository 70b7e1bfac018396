// kernex mcp over Streamable HTTP: the SDK client with the bearer token;
// raw requests for what the SDK never sends (no token, a wrong one, a
// foreign Origin, no or an unknown Mcp-Session-Id, a wrong
// MCP-Protocol-Version, batches); SIGTERM leaves nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { httpServer, httpClient, text, alive, eventually, descendants } from './support.mjs';

const accept = 'application/json, text/event-stream';
const init = { jsonrpc: '2.0', id: 1, method: 'initialize',
    params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '0' } } };

async function post(url, body, headers = {}) {
    const res = await fetch(url, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body),
        headers: { 'Content-Type': 'application/json', Accept: accept, ...headers } });
    return { status: res.status, headers: res.headers, body: await res.text() };
}

test('Streamable HTTP', async (t) => {
    const server = await httpServer();
    const { url, token } = server;
    const auth = { Authorization: `Bearer ${token}` };

    await t.test('listens on loopback and prints a generated token', () => {
        assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
        assert.match(token, /^[0-9a-f]{64}$/);
    });

    await t.test('no token, a wrong one, a longer one: 401', async () => {
        for (const h of [{}, { Authorization: 'Bearer nope' }, { Authorization: `Bearer ${token}x` },
            { Authorization: `Basic ${token}` }]) {
            const r = await post(url, init, h);
            assert.equal(r.status, 401);
            assert.equal(r.headers.get('www-authenticate'), 'Bearer');
        }
    });

    await t.test('a foreign Origin: 403; a local one is served', async () => {
        assert.equal((await post(url, init, { ...auth, Origin: 'http://evil.example' })).status, 403);
        assert.equal((await post(url, init, { ...auth, Origin: 'http://localhost.evil.example' })).status, 403);
        const ok = await post(url, init, { ...auth, Origin: 'http://localhost:5173' });
        assert.equal(ok.status, 200);
    });

    await t.test('raw session rules', async () => {
        const r = await post(url, init, auth);
        assert.equal(r.status, 200);
        assert.equal(JSON.parse(r.body).result.protocolVersion, '2025-06-18');
        const sid = r.headers.get('mcp-session-id');
        assert.match(sid, /^[0-9a-f]{32}$/);
        const ping = { jsonrpc: '2.0', id: 2, method: 'ping' };
        assert.equal((await post(url, ping, auth)).status, 400);  // no session id
        assert.equal((await post(url, ping, { ...auth, 'Mcp-Session-Id': 'f'.repeat(32) })).status, 404);
        assert.equal((await post(url, ping, { ...auth, 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': '2025-11-25' })).status, 400);
        const pong = await post(url, ping, { ...auth, 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': '2025-06-18' });
        assert.equal(pong.status, 200);
        assert.deepEqual(JSON.parse(pong.body), { jsonrpc: '2.0', id: 2, result: {} });
        const note = await post(url, { jsonrpc: '2.0', method: 'notifications/initialized' }, { ...auth, 'Mcp-Session-Id': sid });
        assert.equal(note.status, 202);
        const batch = await post(url, [ping, ping], { ...auth, 'Mcp-Session-Id': sid });
        assert.equal(batch.status, 400);
        assert.equal(JSON.parse(batch.body).error.code, -32600);
        const bad = await post(url, '{not json', { ...auth, 'Mcp-Session-Id': sid });
        assert.equal(JSON.parse(bad.body).error.code, -32700);
        const get = await fetch(url, { headers: { ...auth, Accept: 'text/event-stream', 'Mcp-Session-Id': sid } });
        assert.equal(get.status, 405);
        const wrongType = await post(url, ping, { ...auth, 'Mcp-Session-Id': sid, 'Content-Type': 'text/plain' });
        assert.equal(wrongType.status, 415);
        const del = await fetch(url, { method: 'DELETE', headers: { ...auth, 'Mcp-Session-Id': sid } });
        assert.equal(del.status, 200);
        assert.equal((await post(url, ping, { ...auth, 'Mcp-Session-Id': sid })).status, 404);
        assert.equal((await post(url.replace('/mcp', '/other'), ping, auth)).status, 404);
    });

    await t.test('a body above the limit is refused', async () => {
        const r = await post(url, '{"pad": "' + 'a'.repeat(9 << 20) + '"}', auth).catch((e) => ({ status: 'reset', e }));
        assert.ok(r.status === 413 || r.status === 'reset', `status ${r.status}`);
        assert.equal((await post(url, init, auth)).status, 200);  // still serving
    });

    let kernels = [];
    await t.test('the SDK client: tools, runs, a session, progress', async () => {
        const { client } = await httpClient(url, token);
        const { tools } = await client.listTools();
        assert.equal(tools.length, 7);
        const r = await client.callTool({ name: 'run_code', arguments: { code: 'echo over http', language: 'bash' } });
        assert.equal(text(r).trim(), 'over http');
        assert.equal(r.structuredContent.exit_code, 0);
        await client.callTool({ name: 'run_cell', arguments: { code: 'v = 5' } });
        const v = await client.callTool({ name: 'run_cell', arguments: { code: 'v * 2' } });
        assert.equal(text(v).trim(), '10');
        const progress = [];
        const p = await client.callTool({ name: 'run_code', arguments: {
            code: 'for i in 1 2 3; do echo tick $i; sleep 0.2; done', language: 'bash' } }, undefined, {
            onprogress: (x) => progress.push(x.message) });
        assert.match(text(p), /tick 3/);
        assert.ok(progress.length >= 2, `${progress.length} progress notifications`);
        const controller = new AbortController();
        const slow = client.callTool({ name: 'run_cell', arguments: { code: 'import time\ntime.sleep(60)' } },
            undefined, { signal: controller.signal });
        await new Promise((res) => setTimeout(res, 1500));
        const at = Date.now();
        controller.abort();
        await assert.rejects(slow);
        const after = await client.callTool({ name: 'run_cell', arguments: { code: 'v' } });
        assert.equal(text(after).trim(), '5');
        assert.ok(Date.now() - at < 10000);
        kernels = descendants(server.child.pid);
        assert.ok(kernels.length >= 1);
        // A second client does not see the first one's sessions.
        const other = await httpClient(url, token);
        const listed = await other.client.callTool({ name: 'list_sessions', arguments: {} });
        assert.deepEqual(listed.structuredContent.sessions, []);
        const stolen = await other.client.callTool({ name: 'run_cell', arguments: { code: 'v', session: 'default' } });
        assert.match(text(stolen), /NameError/);  // its own default session, not the first client's
        await other.transport.terminateSession();
        await other.client.close();
    });

    await t.test('SIGTERM shuts every kernel down and leaves nothing', async () => {
        server.child.kill('SIGTERM');
        const { code } = await server.exited;
        assert.equal(code, 0);
        assert.ok(await eventually(() => kernels.every((p) => !alive(p))), 'every kernel ended');
        assert.deepEqual(server.dir.leftovers(), []);
        server.dir.remove();
    });
});

test('--http refuses a non-loopback address without --host', async () => {
    const { spawnSync } = await import('node:child_process');
    const { kernex } = await import('./support.mjs');
    const r = spawnSync(kernex, ['mcp', '--http', '0.0.0.0:0'], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /needs --host 0\.0\.0\.0/);
});
