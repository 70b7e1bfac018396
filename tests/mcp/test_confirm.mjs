// kernex mcp --confirm: before each run_code and run_cell the server asks the
// user through MCP elicitation (elicitation/create, the exact code, its
// language and SHA-256); only an accepted form with run: true runs it. A
// decline, a cancel, a cancelled call: nothing runs and the result says so. A
// client that did not declare elicitation is refused at initialize.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { stdioClient, httpServer, httpClient, text, types, scratch, sleep } from './support.mjs';

const sha256 = (s) => crypto.createHash('sha256').update(s, 'utf8').digest('hex');
const withElicitation = { capabilities: { elicitation: {} } };

// answer(params) decides; every question is kept in asked.
function approver(client, asked, answer) {
    client.setRequestHandler(types.ElicitRequestSchema, async (request, extra) => {
        asked.push(request.params);
        return answer(request.params, extra);
    });
}

test('--confirm over stdio', async (t) => {
    const dir = scratch();
    const s = await stdioClient(['--confirm', '--timeout', '60'], dir, withElicitation);
    const { client } = s;
    const asked = [];
    let answer = () => ({ action: 'accept', content: { run: true } });
    approver(client, asked, (p, extra) => answer(p, extra));
    const marker = path.join(dir.root, 'ran');

    await t.test('the run tools say that the user is asked first', async () => {
        const { tools } = await client.listTools();
        for (const name of ['run_code', 'run_cell'])
            assert.match(tools.find((x) => x.name === name).description, /first shown to the user/);
    });

    await t.test('run_code: the question shows the exact code, language and SHA-256; accepted, it runs', async () => {
        const code = 'print(6 * 7)\n';
        const r = await client.callTool({ name: 'run_code', arguments: { code, language: 'python' } });
        assert.equal(text(r), '42\n');
        assert.equal(r.isError, false);
        assert.equal(asked.length, 1);
        const q = asked[0];
        assert.ok(q.message.endsWith('\n\n' + code), 'the exact code ends the message');
        assert.match(q.message, /run this python code/);
        assert.ok(q.message.includes(sha256(code)), 'the SHA-256 of the code');
        assert.equal(q.requestedSchema.properties.run.type, 'boolean');
    });

    await t.test('run_code: declined, cancelled or not approved, nothing runs and the result says so', async () => {
        const code = `open(${JSON.stringify(marker)}, "w").write("x")`;
        for (const [reply, said] of [[{ action: 'decline' }, /declined/],
                                     [{ action: 'cancel' }, /cancelled/],
                                     [{ action: 'accept', content: { run: false } }, /did not approve/]]) {
            answer = () => reply;
            const r = await client.callTool({ name: 'run_code', arguments: { code, language: 'python' } });
            assert.equal(r.isError, true);
            assert.match(text(r), said);
            assert.match(text(r), /refused/);
            assert.equal(r.structuredContent.exit_code, 1);
            assert.equal(fs.existsSync(marker), false, 'the code did not run');
        }
    });

    await t.test('run_cell: asked with the session; a refused cell never reaches the kernel', async () => {
        answer = () => ({ action: 'accept', content: { run: true } });
        let r = await client.callTool({ name: 'run_cell', arguments: { code: 'x = 41' } });
        assert.equal(r.isError, false);
        const q = asked[asked.length - 1];
        // The kernel's language (python), not its kernelspec's name (python3).
        assert.match(q.message, /^kernex asks: run this python code in session default \(a python3 kernel/);
        assert.ok(q.message.endsWith('\n\nx = 41'));

        answer = () => ({ action: 'decline' });
        r = await client.callTool({ name: 'run_cell', arguments: { code: 'x = 0' } });
        assert.equal(r.isError, true);
        assert.equal(r.structuredContent.status, 'refused');
        assert.match(text(r), /declined/);

        answer = () => ({ action: 'accept', content: { run: true } });
        r = await client.callTool({ name: 'run_cell', arguments: { code: 'x + 1' } });
        assert.equal(text(r), '42\n');
    });

    await t.test('hidden characters are pointed out in the question', async () => {
        answer = () => ({ action: 'decline' });
        const code = 'ok = True # \u202e }: fi ;)"nur"(tnirp\nprint("\\x1b[2K")';
        await client.callTool({ name: 'run_code', arguments: { code: code + '\x1b[1A', language: 'python' } });
        assert.match(asked[asked.length - 1].message, /WARNING: the code holds 2 control or bidirectional/);
    });

    await t.test('cancelling the call while the user is asked: nothing runs, the question is withdrawn', async () => {
        let withdrawn = false;
        answer = (p, extra) => new Promise((resolve) => {
            extra.signal.addEventListener('abort', () => { withdrawn = true; resolve({ action: 'cancel' }); });
        });
        const controller = new AbortController();
        const code = `open(${JSON.stringify(marker)}, "w").write("x")`;
        const call = client.callTool({ name: 'run_code', arguments: { code, language: 'python' } }, undefined,
                                     { signal: controller.signal });
        await sleep(500);
        const started = Date.now();
        controller.abort('the user went away');
        await assert.rejects(call);
        for (let i = 0; i < 40 && !withdrawn; ++i) await sleep(50);
        assert.ok(withdrawn, 'the server withdrew its question (notifications/cancelled)');
        assert.ok(Date.now() - started < 2000);
        await sleep(300);
        assert.equal(fs.existsSync(marker), false);
        // The connection goes on.
        answer = () => ({ action: 'accept', content: { run: true } });
        const r = await client.callTool({ name: 'run_code', arguments: { code: 'echo fine', language: 'bash' } });
        assert.equal(text(r), 'fine\n');
    });

    await client.close();
    dir.remove();
});

test('--confirm-wait: a question unanswered that long is withdrawn and nothing runs', async () => {
    const dir = scratch();
    const s = await stdioClient(['--confirm', '--confirm-wait', '1'], dir, withElicitation);
    const marker = path.join(dir.root, 'ran');
    let withdrawn = false;
    // A user who never answers.
    approver(s.client, [], (p, extra) => new Promise((resolve) => {
        extra.signal.addEventListener('abort', () => { withdrawn = true; resolve({ action: 'cancel' }); });
    }));
    const code = `open(${JSON.stringify(marker)}, "w").write("x")`;
    for (const [name, args] of [['run_code', { code, language: 'python' }], ['run_cell', { code }]]) {
        withdrawn = false;
        const started = Date.now();
        const r = await s.client.callTool({ name, arguments: args }, undefined, { timeout: 30000 });
        assert.equal(r.isError, true);
        assert.match(text(r), /not run: the user was asked and no answer within 1 s/);
        assert.ok(Date.now() - started < 20000, 'the 1 s wait, not the default 10 minutes');
        for (let i = 0; i < 40 && !withdrawn; ++i) await sleep(50);
        assert.ok(withdrawn, 'the server withdrew its question');
        assert.equal(fs.existsSync(marker), false, 'the code did not run');
    }
    await s.client.close();
    dir.remove();
});

test('--confirm refuses a client without elicitation at initialize', async () => {
    const dir = scratch();
    await assert.rejects(stdioClient(['--confirm'], dir), /did not declare the elicitation capability/);
    // Without --confirm the same client is served as before.
    const s = await stdioClient([], dir);
    const r = await s.client.callTool({ name: 'run_code', arguments: { code: 'echo plain', language: 'bash' } });
    assert.equal(text(r), 'plain\n');
    await s.client.close();
    dir.remove();
});

test('--confirm over Streamable HTTP: the question comes on the call\'s stream', async () => {
    const server = await httpServer(['--confirm']);
    const { client } = await httpClient(server.url, server.token, withElicitation);
    const asked = [];
    let reply = { action: 'accept', content: { run: true } };
    approver(client, asked, () => reply);
    let r = await client.callTool({ name: 'run_code', arguments: { code: 'echo over http', language: 'bash' } });
    assert.equal(text(r), 'over http\n');
    assert.equal(asked.length, 1);
    assert.match(asked[0].message, /run this bash code/);
    reply = { action: 'decline' };
    r = await client.callTool({ name: 'run_code', arguments: { code: 'echo never', language: 'bash' } });
    assert.equal(r.isError, true);
    assert.doesNotMatch(text(r), /never\n/);
    await client.close();
    server.child.kill('SIGTERM');
    await server.exited;
    server.dir.remove();
});
