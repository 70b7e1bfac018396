// kernex mcp's answers to bad input over stdio (raw JSON-RPC lines, since the
// SDK never sends them): each is answered with the right error and the
// server keeps serving, with bounded memory; then EOF ends it cleanly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { rawStdio, alive, eventually } from './support.mjs';

const init = (id, version = '2025-11-25') => ({ jsonrpc: '2.0', id, method: 'initialize',
    params: { protocolVersion: version, capabilities: {}, clientInfo: { name: 'raw', version: '0' } } });

function rssKiB(pid) {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(status.match(/VmRSS:\s+(\d+)/)[1]);
}

test('bad input over stdio', async (t) => {
    const s = rawStdio();

    await t.test('a request before initialize is refused', async () => {
        s.send({ jsonrpc: '2.0', id: 1, method: 'tools/list' });
        const r = await s.next();
        assert.equal(r.id, 1);
        assert.equal(r.error.code, -32600);
        assert.match(r.error.message, /initialize/);
        s.send({ jsonrpc: '2.0', id: 2, method: 'ping' });  // ping is always answered
        assert.deepEqual((await s.next()).result, {});
    });

    await t.test('protocol version 2025-06-18 is negotiated as asked', async () => {
        s.send(init(3, '2025-06-18'));
        const r = await s.next();
        assert.equal(r.result.protocolVersion, '2025-06-18');
        assert.deepEqual(r.result.capabilities, { tools: { listChanged: false } });
        assert.equal(r.result.serverInfo.name, 'kernex');
        s.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    });

    await t.test('a second initialize is refused', async () => {
        s.send(init(4));
        assert.equal((await s.next()).error.code, -32600);
    });

    await t.test('malformed JSON: -32700, and the server keeps serving', async () => {
        s.send('{"jsonrpc": "2.0", "id": 5, "method": ');
        const r = await s.next();
        assert.equal(r.error.code, -32700);
        assert.equal(r.id, null);
        s.send({ jsonrpc: '2.0', id: 6, method: 'ping' });
        assert.equal((await s.next()).id, 6);
    });

    await t.test('unknown method: -32601', async () => {
        s.send({ jsonrpc: '2.0', id: 7, method: 'resources/list' });
        const r = await s.next();
        assert.equal(r.error.code, -32601);
        assert.equal(r.id, 7);
    });

    await t.test('batches are refused', async () => {
        s.send([{ jsonrpc: '2.0', id: 8, method: 'ping' }, { jsonrpc: '2.0', id: 9, method: 'ping' }]);
        const r = await s.next();
        assert.equal(r.error.code, -32600);
        assert.match(r.error.message, /batch/);
    });

    await t.test('not JSON-RPC: -32600', async () => {
        for (const bad of ['42', '"x"', 'null', '{"id": 10, "method": "ping"}', '{"jsonrpc": "2.0", "id": {}, "method": "ping"}',
            '{"jsonrpc": "2.0", "id": 11, "method": 12}']) {
            s.send(bad);
            const r = await s.next();
            assert.ok(r.error.code === -32600, bad);
        }
        s.send({ jsonrpc: '2.0', id: 12, method: 'tools/list', params: [1] });
        assert.equal((await s.next()).error.code, -32602);
    });

    await t.test('nesting deep enough to overflow a recursive parser is refused', async () => {
        s.send('['.repeat(1000000));
        assert.equal((await s.next()).error.code, -32600);
        s.send({ jsonrpc: '2.0', id: 13, method: 'ping' });
        assert.equal((await s.next()).id, 13);
    });

    await t.test('a 100 MB line is refused with bounded memory', async () => {
        const before = rssKiB(s.child.pid);
        const chunk = 'a'.repeat(1 << 20);
        s.child.stdin.write('{"jsonrpc": "2.0", "id": 14, "method": "ping", "params": {"pad": "');
        for (let i = 0; i < 100; ++i) {
            if (!s.child.stdin.write(chunk)) await new Promise((r) => s.child.stdin.once('drain', r));
        }
        s.child.stdin.write('"}}\n');
        const r = await s.next(60000);
        assert.equal(r.error.code, -32600);
        assert.match(r.error.message, /refused: the limit is/);
        const after = rssKiB(s.child.pid);
        assert.ok(after - before < 48 * 1024, `RSS grew by ${after - before} KiB`);
        s.send({ jsonrpc: '2.0', id: 15, method: 'ping' });
        assert.equal((await s.next()).id, 15);
    });

    await t.test('tools/call with bad params', async () => {
        s.send({ jsonrpc: '2.0', id: 16, method: 'tools/call', params: { arguments: {} } });
        assert.equal((await s.next()).error.code, -32602);
        s.send({ jsonrpc: '2.0', id: 17, method: 'tools/call', params: { name: 'nope', arguments: {} } });
        const r = await s.next();
        assert.equal(r.error.code, -32602);
        assert.match(r.error.message, /unknown tool 'nope'/);
        s.send({ jsonrpc: '2.0', id: 18, method: 'tools/call', params: { name: 'run_code', arguments: 'x' } });
        assert.equal((await s.next()).result.isError, true);
    });

    await t.test('a response nobody asked for and unknown notifications are ignored', async () => {
        s.send({ jsonrpc: '2.0', id: 99, result: {} });
        s.send({ jsonrpc: '2.0', method: 'notifications/whatever' });
        s.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 12345 } });
        s.send({ jsonrpc: '2.0', id: 19, method: 'ping' });
        assert.equal((await s.next()).id, 19);
    });

    await t.test('stdin EOF ends the server, exit 0', async () => {
        s.child.stdin.end();
        const { code } = await s.exited;
        assert.equal(code, 0);
        assert.deepEqual(s.dir.leftovers(), []);
        s.dir.remove();
    });
});

test('an unsupported protocol version gets the newest one', async () => {
    const s = rawStdio();
    s.send(init(1, '2024-11-05'));
    assert.equal((await s.next()).result.protocolVersion, '2025-11-25');
    s.child.stdin.end();
    assert.equal((await s.exited).code, 0);
    s.dir.remove();
});

test('SIGTERM ends a server with a kernel running and leaves nothing', async () => {
    const s = rawStdio();
    s.send(init(1));
    await s.next();
    s.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    s.send({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'run_cell', arguments: { code: 'import os; print(os.getpid())' } } });
    const r = await s.next(60000);
    const kernelPid = Number(r.result.content[0].text.trim());
    assert.ok(alive(kernelPid));
    s.send({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'run_cell', arguments: { code: 'import time; time.sleep(60)' } } });
    await new Promise((res) => setTimeout(res, 500));
    s.child.kill('SIGTERM');
    const { code } = await s.exited;
    assert.equal(code, 0);
    assert.ok(await eventually(() => !alive(kernelPid)), 'the kernel ended');
    assert.deepEqual(s.dir.leftovers(), []);
    s.dir.remove();
});
