// Sessions whose kernels run elsewhere — in Docker containers
// (--docker-image) or on a Jupyter Server (--gateway) — driven through
// `kernex mcp` by the official SDK client. Not run by the mcp suite itself:
// the docker and gateway suites run it (through run_test.sh) once their
// dockerd or Jupyter Server is up, and then check on their side that no
// container or remote kernel is left. They say where the kernels run with:
//   KERNEX_MCP_SESSION_ARGS  kernex mcp's extra arguments, a JSON array
//   KERNEX_MCP_PROBE         {"code": ..., "expect": ...}: a cell whose output
//                            (trimmed) proves where the kernel runs
//   KERNEX_MCP_IMAGES        "1": the kernel has matplotlib (a figure comes back)
//   KERNEX_MCP_RUN_CODE      "1": run_code's executor is docker too (--executor
//                            docker --image among the arguments): its runs are
//                            checked the same way
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stdioClient, text, alive, eventually, scratch } from './support.mjs';

const args = JSON.parse(process.env.KERNEX_MCP_SESSION_ARGS || '[]');
const probe = JSON.parse(process.env.KERNEX_MCP_PROBE || 'null');
assert.ok(args.length > 0 && probe, 'run by the docker or gateway suite, which set KERNEX_MCP_SESSION_ARGS and KERNEX_MCP_PROBE');

test(`sessions with kernex mcp ${args.join(' ')}`, async (t) => {
    const dir = scratch();
    const s = await stdioClient(['--timeout', '120', ...args], dir);
    const { client } = s;
    const cell = (code, session, options) =>
        client.callTool({ name: 'run_cell', arguments: session ? { code, session } : { code } }, undefined,
                        { timeout: 180000, ...options });

    await t.test('list_kernels names the default kernel', async () => {
        const r = await client.callTool({ name: 'list_kernels', arguments: {} });
        assert.ok(r.structuredContent.kernels.some((k) => k.name === 'python3'), JSON.stringify(r.structuredContent));
    });

    await t.test('the default session: state across calls, where the kernel runs, errors', async () => {
        let r = await cell('x = 41');
        assert.equal(r.isError, false, text(r));
        r = await cell('x + 1');
        assert.equal(text(r), '42\n');
        r = await cell(probe.code);
        assert.equal(text(r).trim(), probe.expect, 'the kernel runs where the server was told');
        r = await cell('1 / 0');
        assert.equal(r.isError, true);
        assert.equal(r.structuredContent.status, 'error');
        assert.match(text(r), /ZeroDivisionError/);
        assert.doesNotMatch(text(r), /\x1b\[/);
    });

    await t.test('progress while the cell runs; cancelling time.sleep(60) interrupts it, the session lives on', async () => {
        const progress = [];
        let firstAt = 0;
        const r = await cell('import time\nprint("first", flush=True)\ntime.sleep(1.5)\nprint("second")', undefined, {
            onprogress: (p) => { if (!firstAt) firstAt = Date.now(); progress.push(p); },
        });
        const endedAt = Date.now();
        assert.match(text(r), /first[\s\S]*second/);
        assert.match(progress[0].message, /first/);
        assert.ok(endedAt - firstAt >= 1000, 'the first line came while the cell still slept');

        await cell('kept = 7');
        const controller = new AbortController();
        const call = cell('import time\ntime.sleep(60)\nkept = 0', undefined, { signal: controller.signal });
        await new Promise((resolve) => setTimeout(resolve, 1500));
        const cancelledAt = Date.now();
        controller.abort('changed my mind');
        await assert.rejects(call);
        const after = await cell('print(kept)');
        assert.equal(text(after).trim(), '7');
        assert.ok(Date.now() - cancelledAt < 10000, 'the interrupt ended the sleep');
    });

    if (process.env.KERNEX_MCP_IMAGES === '1') {
        await t.test('a matplotlib figure comes back as image content', async () => {
            const r = await cell('%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()');
            assert.equal(r.isError, false, text(r));
            const image = r.content.find((c) => c.type === 'image');
            assert.ok(image, JSON.stringify(r.content).slice(0, 300));
            assert.equal(image.mimeType, 'image/png');
            assert.ok(Buffer.from(image.data, 'base64').subarray(1, 4).toString() === 'PNG');
        });
    }

    if (process.env.KERNEX_MCP_RUN_CODE === '1') {
        await t.test('run_code in the executor\'s container: where it runs, exit codes, timeouts, stateless', async () => {
            const run = (code, language, extra = {}) =>
                client.callTool({ name: 'run_code', arguments: { code, language, ...extra } }, undefined, { timeout: 180000 });
            let r = await run(probe.code, 'python');
            assert.equal(r.isError, false, text(r));
            assert.equal(text(r).trim(), probe.expect, 'the block runs in a container');
            r = await run('x = 1', 'python');
            r = await run('print(x)', 'python');
            assert.equal(r.isError, true);
            assert.match(text(r), /NameError/);
            r = await run('echo out; exit 3', 'bash');
            assert.equal(r.isError, true);
            assert.equal(r.structuredContent.exit_code, 3);
            assert.match(text(r), /^out\n/);
            const started = Date.now();
            r = await run('echo before; sleep 60', 'bash', { timeout: 2 });
            assert.equal(r.structuredContent.timed_out, true);
            assert.equal(r.structuredContent.exit_code, 124);
            assert.match(text(r), /before/);
            assert.ok(Date.now() - started < 30000, 'the timeout ended the block');
        });
    }

    await t.test('more sessions: their own state, restart forgets it, close ends it', async () => {
        const started = await client.callTool({ name: 'start_session', arguments: {} });
        assert.notEqual(started.isError, true, text(started));
        const id = started.structuredContent.session;
        await cell('x = "other"', id);
        assert.equal(text(await cell('print(x)', id)), 'other\n');
        assert.equal(text(await cell('x + 1')), '42\n', 'the default session kept its own x');
        const listed = await client.callTool({ name: 'list_sessions', arguments: {} });
        assert.deepEqual(listed.structuredContent.sessions.map((x) => x.session).sort(), ['default', id].sort());

        const restarted = await client.callTool({ name: 'restart_session', arguments: { session: id } });
        assert.notEqual(restarted.isError, true, text(restarted));
        const r = await cell('print(x)', id);
        assert.equal(r.isError, true);
        assert.match(text(r), /NameError/);

        const closed = await client.callTool({ name: 'close_session', arguments: { session: id } });
        assert.notEqual(closed.isError, true, text(closed));
        const gone = await cell('1', id);
        assert.equal(gone.isError, true);
        assert.match(text(gone), /unknown session/);
    });

    await client.close();
    assert.ok(await eventually(() => !alive(s.pid), 20000), 'kernex mcp ended after the client left');
    assert.deepEqual(dir.leftovers(), []);
    dir.remove();
});
