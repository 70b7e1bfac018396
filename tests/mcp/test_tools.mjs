// kernex mcp over stdio with the official SDK client: the tools and their
// schemas, stateless runs, a stateful session, images, errors, limits, and
// nothing left once the client disconnects.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stdioClient, rawStdio, text, descendants, alive, eventually, types } from './support.mjs';

test('tools, stateless runs and a session over stdio', async (t) => {
    const s = await stdioClient(['--timeout', '20', '--max-output', '100000']);
    const { client } = s;
    const seen = new Set();

    await t.test('initialize negotiated the newest version and the tools capability', () => {
        assert.equal(client.getServerVersion().name, 'kernex');
        assert.ok(client.getServerCapabilities().tools);
    });

    await t.test('tools/list: names, schemas, annotations', async () => {
        const { tools } = await client.listTools();
        const byName = Object.fromEntries(tools.map((x) => [x.name, x]));
        for (const name of ['run_code', 'run_cell', 'start_session', 'list_sessions', 'restart_session',
            'close_session', 'list_kernels']) {
            assert.ok(byName[name], `tool ${name}`);
            assert.equal(byName[name].inputSchema.type, 'object');
            assert.ok(byName[name].description.length > 20);
            assert.ok(byName[name].annotations);
        }
        assert.deepEqual(byName.run_code.inputSchema.required, ['code', 'language']);
        assert.deepEqual(byName.run_code.outputSchema.required, ['exit_code', 'timed_out', 'truncated', 'files']);
        assert.match(byName.run_code.description, /python/);
        assert.match(byName.run_code.description, /Stateless/);
        assert.match(byName.run_cell.description, /persist/);
        assert.equal(byName.list_sessions.annotations.readOnlyHint, true);
    });

    await t.test('run_code: python and bash', async () => {
        const py = await client.callTool({ name: 'run_code', arguments: { code: 'print(6*7)', language: 'python' } });
        assert.equal(text(py).trim(), '42');
        assert.equal(py.isError, false);
        assert.deepEqual(py.structuredContent, { exit_code: 0, timed_out: false, truncated: false, files: [] });
        const sh = await client.callTool({ name: 'run_code', arguments: { code: 'echo hi from $0; exit 3', language: 'bash' } });
        assert.match(text(sh), /hi from/);
        assert.equal(sh.isError, true);
        assert.equal(sh.structuredContent.exit_code, 3);
        assert.match(text(sh), /exit code 3/);
    });

    await t.test('run_code: stateless', async () => {
        await client.callTool({ name: 'run_code', arguments: { code: 'x = 1', language: 'python' } });
        const r = await client.callTool({ name: 'run_code', arguments: { code: 'print(x)', language: 'python' } });
        assert.equal(r.isError, true);
        assert.match(text(r), /NameError/);
    });

    await t.test('run_code: timeout', async () => {
        const r = await client.callTool({ name: 'run_code',
            arguments: { code: 'import time\nprint("before", flush=True)\ntime.sleep(30)', language: 'python', timeout: 1 } });
        assert.equal(r.isError, true);
        assert.equal(r.structuredContent.timed_out, true);
        assert.equal(r.structuredContent.exit_code, 124);
        assert.match(text(r), /before/);
    });

    await t.test('run_code: a timeout above the server limit is refused', async () => {
        const r = await client.callTool({ name: 'run_code', arguments: { code: 'print(1)', language: 'python', timeout: 1000 } });
        assert.equal(r.isError, true);
        assert.match(text(r), /above this server's limit of 20 s/);
    });

    await t.test('run_code: output cap', async () => {
        const r = await client.callTool({ name: 'run_code', arguments: { code: 'print("y" * 300000)', language: 'python' } });
        assert.equal(r.structuredContent.truncated, true);
        assert.ok(text(r).length < 101000, `kept ${text(r).length} chars`);
        assert.match(text(r), /dropped|truncated|bytes/);
    });

    await t.test('bad arguments are tool errors naming the problem', async () => {
        let r = await client.callTool({ name: 'run_code', arguments: { code: 'print(1)', language: 'cobol' } });
        assert.equal(r.isError, true);
        assert.match(text(r), /unknown language 'cobol'.*python/);
        r = await client.callTool({ name: 'run_code', arguments: { code: 42, language: 'python' } });
        assert.equal(r.isError, true);
        assert.match(text(r), /'code' must be a string/);
        r = await client.callTool({ name: 'run_code', arguments: { language: 'python' } });
        assert.match(text(r), /'code' .* is required/);
        r = await client.callTool({ name: 'run_code', arguments: { code: '1', language: 'python', color: 'red' } });
        assert.match(text(r), /unknown argument 'color'/);
        r = await client.callTool({ name: 'run_cell', arguments: { code: '1', session: 'nope' } });
        assert.equal(r.isError, true);
        assert.match(text(r), /unknown session 'nope'/);
        r = await client.callTool({ name: 'start_session', arguments: { kernel: 'no-such-kernel' } });
        assert.equal(r.isError, true);
        assert.match(text(r), /no-such-kernel/);
        await assert.rejects(client.callTool({ name: 'no_such_tool', arguments: {} }),
            (e) => e.code === types.ErrorCode.InvalidParams && /unknown tool 'no_such_tool'/.test(e.message));
    });

    await t.test('run_cell: the default session keeps state', async () => {
        const a = await client.callTool({ name: 'run_cell', arguments: { code: 'x = 41' } });
        assert.equal(a.isError, false);
        assert.equal(a.structuredContent.session, 'default');
        const b = await client.callTool({ name: 'run_cell', arguments: { code: 'x + 1' } });
        assert.equal(text(b).trim(), '42');
        assert.equal(b.structuredContent.status, 'ok');
        for (const pid of descendants(s.pid)) seen.add(pid);
    });

    await t.test('run_cell: an error is isError with the traceback, colours stripped', async () => {
        const r = await client.callTool({ name: 'run_cell', arguments: { code: '1/0' } });
        assert.equal(r.isError, true);
        assert.equal(r.structuredContent.status, 'error');
        assert.match(text(r), /ZeroDivisionError/);
        assert.doesNotMatch(text(r), /\x1b\[/);
    });

    await t.test('run_cell: a matplotlib figure is image content', async () => {
        const r = await client.callTool({ name: 'run_cell', arguments: {
            code: '%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()' } });
        assert.equal(r.isError, false, text(r));
        const images = r.content.filter((c) => c.type === 'image');
        assert.equal(images.length, 1, JSON.stringify(r.content).slice(0, 500));
        assert.equal(images[0].mimeType, 'image/png');
        assert.equal(Buffer.from(images[0].data, 'base64').subarray(1, 4).toString(), 'PNG');
    });

    await t.test('run_cell: an SVG display is image content too', async () => {
        const r = await client.callTool({ name: 'run_cell', arguments: {
            code: 'from IPython.display import SVG, display\n' +
                  'display(SVG(\'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>\'))' } });
        const images = r.content.filter((c) => c.type === 'image');
        assert.equal(images.length, 1);
        assert.equal(images[0].mimeType, 'image/svg+xml');
        assert.match(Buffer.from(images[0].data, 'base64').toString(), /<svg/);
    });

    await t.test('run_cell: a timeout interrupts and the session stays usable', async () => {
        const r = await client.callTool({ name: 'run_cell', arguments: { code: 'import time\ntime.sleep(30)', timeout: 1 } });
        assert.equal(r.isError, true);
        assert.equal(r.structuredContent.status, 'timeout');
        const after = await client.callTool({ name: 'run_cell', arguments: { code: 'x' } });
        assert.equal(text(after).trim(), '41');
    });

    await t.test('run_cell: output cap', async () => {
        const r = await client.callTool({ name: 'run_cell', arguments: { code: 'print("z" * 300000)' } });
        assert.equal(r.structuredContent.truncated, true);
        assert.ok(text(r).length < 101000, `kept ${text(r).length} chars`);
    });

    await t.test('sessions: start, list, restart, close', async () => {
        const started = await client.callTool({ name: 'start_session', arguments: {} });
        const id = started.structuredContent.session;
        assert.match(id, /^[0-9a-f]{8}$/);
        await client.callTool({ name: 'run_cell', arguments: { code: 'y = "kept"', session: id } });
        const y = await client.callTool({ name: 'run_cell', arguments: { code: 'print(y)', session: id } });
        assert.equal(text(y).trim(), 'kept');
        const noY = await client.callTool({ name: 'run_cell', arguments: { code: 'print(y)' } });
        assert.match(text(noY), /NameError/);  // the default session is another kernel
        const listed = await client.callTool({ name: 'list_sessions', arguments: {} });
        assert.deepEqual(listed.structuredContent.sessions.map((x) => x.session).sort(), ['default', id].sort());
        for (const pid of descendants(s.pid)) seen.add(pid);
        const restarted = await client.callTool({ name: 'restart_session', arguments: { session: id } });
        assert.equal(restarted.isError, undefined);
        // A restart the agent asked for is no surprise: the next cell runs
        // (no note that state was lost) and finds y gone.
        const first = await client.callTool({ name: 'run_cell', arguments: { code: 'print(y)', session: id } });
        assert.match(text(first), /NameError/);
        assert.doesNotMatch(text(first), /state .*lost/);
        for (const pid of descendants(s.pid)) seen.add(pid);
        const closed = await client.callTool({ name: 'close_session', arguments: { session: id } });
        assert.match(text(closed), /closed/);
        const after = await client.callTool({ name: 'run_cell', arguments: { code: '1', session: id } });
        assert.match(text(after), /unknown session/);
    });

    await t.test('list_kernels', async () => {
        const r = await client.callTool({ name: 'list_kernels', arguments: {} });
        assert.equal(r.structuredContent.default, 'python3');
        assert.ok(r.structuredContent.kernels.some((k) => k.name === 'python3' && k.language === 'python'));
    });

    await t.test('after the client disconnects nothing is left', async () => {
        assert.ok(seen.size >= 2, `kernels seen: ${[...seen]}`);
        await client.close();
        assert.ok(await eventually(() => !alive(s.pid)), 'kernex mcp ended on stdin EOF');
        assert.ok(await eventually(() => [...seen].every((p) => !alive(p))), 'every kernel ended');
        assert.deepEqual(s.dir.leftovers(), []);
        s.dir.remove();
    });
});

test('run_code\'s limits as kernex exec\'s flags: --rlimit-* (local --sandbox), --memory / --cpus / --pids-limit (docker)', async () => {
    // A block that writes past --rlimit-fsize is stopped at the limit.
    const s = await stdioClient(['--sandbox', '--rlimit-fsize', '4096']);
    const r = await s.client.callTool({ name: 'run_code', arguments: {
        code: 'head -c 100000 /dev/zero > big\necho "head: $?"\nwc -c < big', language: 'bash' } });
    const lines = text(r).trim().split('\n');
    assert.equal(Number(lines[lines.length - 1]), 4096, text(r));
    assert.match(text(r), /head: 153/);  // 128 + SIGXFSZ
    await s.client.close();
    s.dir.remove();

    // The docker limits reach the docker executor's config: a bad value is
    // refused when the server starts (no daemon is needed to see it).
    for (const [flag, value, said] of [['--memory', 'lots', /^kernex: --memory must be a number of bytes/],
                                       ['--pids-limit', '-5', /^kernex: --pids-limit must be/],
                                       ['--cpus', '-1', /^kernex: --cpus must be/]]) {
        const raw = rawStdio(['--executor', 'docker', '--image', 'kernex-test/none', flag, value]);
        const { code } = await raw.exited;
        assert.notEqual(code, 0, `${flag} ${value}`);
        assert.ok(await eventually(() => said.test(raw.stderr()), 5000), raw.stderr());
        raw.dir.remove();
    }
});
