// Many sessions at once: calls on different sessions run concurrently, calls
// on one session one at a time; --max-sessions and --session-idle.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stdioClient, text, alive, eventually, descendants } from './support.mjs';

test('8 sessions in parallel', async () => {
    const s = await stdioClient(['--max-sessions', '8']);
    const { client } = s;
    const ids = await Promise.all(Array.from({ length: 8 }, () =>
        client.callTool({ name: 'start_session', arguments: {} }).then((r) => r.structuredContent.session)));
    assert.equal(new Set(ids).size, 8);
    const kernels = descendants(s.pid);
    const tooMany = await client.callTool({ name: 'start_session', arguments: {} });
    assert.equal(tooMany.isError, true);
    assert.match(text(tooMany), /too many sessions: at most 8 \(--max-sessions\)/);

    // Each cell sleeps 2 s: 8 in turn would take 16 s.
    const started = Date.now();
    const results = await Promise.all(ids.map((id, i) => client.callTool({ name: 'run_cell', arguments: {
        session: id, code: `import time\nmine = ${i}\ntime.sleep(2)\nprint(mine)` } })));
    const elapsed = Date.now() - started;
    results.forEach((r, i) => assert.equal(text(r).trim(), String(i)));
    assert.ok(elapsed < 12000, `8 sessions' cells took ${elapsed} ms`);

    // One session: the second call starts after the first ends.
    const [a, b] = await Promise.all([
        client.callTool({ name: 'run_cell', arguments: { session: ids[0], code: 'import time\nt0 = time.time()\ntime.sleep(1)\nt1 = time.time()' } }),
        client.callTool({ name: 'run_cell', arguments: { session: ids[0], code: 'import time\nprint(time.time() >= t1)' } }),
    ]);
    assert.equal(a.isError, false);
    assert.equal(text(b).trim(), 'True');
    // Calls on one session run in the order they arrived, however many wait.
    await client.callTool({ name: 'run_cell', arguments: { session: ids[1], code: 'order = []' } });
    await Promise.all(Array.from({ length: 8 }, (_, i) => client.callTool({ name: 'run_cell', arguments: {
        session: ids[1], code: `import time\ntime.sleep(0.05)\norder.append(${i})` } })));
    const order = await client.callTool({ name: 'run_cell', arguments: { session: ids[1], code: 'print(order)' } });
    assert.equal(text(order).trim(), '[0, 1, 2, 3, 4, 5, 6, 7]');

    await client.close();
    assert.ok(await eventually(() => !alive(s.pid)));
    assert.ok(await eventually(() => kernels.every((p) => !alive(p))), 'every kernel ended');
    assert.deepEqual(s.dir.leftovers(), []);
    s.dir.remove();
});

test('idle sessions are shut down after --session-idle', async () => {
    const s = await stdioClient(['--session-idle', '1']);
    const { client } = s;
    const r = await client.callTool({ name: 'run_cell', arguments: { code: 'import os; print(os.getpid())' } });
    const kernel = Number(text(r).trim());
    assert.ok(await eventually(() => !alive(kernel), 15000), 'the idle kernel was shut down');
    const listed = await client.callTool({ name: 'list_sessions', arguments: {} });
    assert.deepEqual(listed.structuredContent.sessions, []);
    const again = await client.callTool({ name: 'run_cell', arguments: { code: 'print(1)' } });
    assert.equal(text(again).trim(), '1');  // a new default session
    await client.close();
    assert.ok(await eventually(() => !alive(s.pid)));
    s.dir.remove();
});
