// Long runs: output streamed as notifications/progress before the result
// when the call carries a progressToken; notifications/cancelled interrupts
// the code (kernel interrupt, process group kill) and the session stays usable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stdioClient, text, alive, eventually, descendants } from './support.mjs';

test('progress and cancellation', async (t) => {
    const s = await stdioClient(['--timeout', '120']);
    const { client } = s;

    await t.test('run_code: progress notifications arrive before the result', async () => {
        const progress = [];
        let resultAt = 0;
        const r = await client.callTool({ name: 'run_code', arguments: {
            code: 'import time\nfor i in range(3):\n    print("step", i, flush=True)\n    time.sleep(0.3)',
            language: 'python' } }, undefined, {
            onprogress: (p) => progress.push({ ...p, at: Date.now() }),
        }).then((x) => { resultAt = Date.now(); return x; });
        assert.match(text(r), /step 2/);
        assert.ok(progress.length >= 2, `${progress.length} progress notifications`);
        // Chunks are as the process wrote them ("step", " 0", ...): what
        // counts is that step 0 was on its way while the code still ran.
        let seen = '';
        const first = progress.find((p) => /step 0/.test(seen += p.message));
        assert.ok(first && resultAt - first.at >= 100, 'step 0 arrived before the code ended');
        assert.ok(progress.every((p) => p.at <= resultAt));
        for (let i = 1; i < progress.length; ++i) assert.ok(progress[i].progress > progress[i - 1].progress);
        assert.match(progress.map((p) => p.message).join(''), /step 0[\s\S]*step 1[\s\S]*step 2/);
    });

    await t.test('run_cell: progress notifications arrive while the cell runs', async () => {
        const progress = [];
        let firstAt = 0;
        const started = Date.now();
        const r = await client.callTool({ name: 'run_cell', arguments: {
            code: 'import time\nprint("first", flush=True)\ntime.sleep(1.5)\nprint("second")' } }, undefined, {
            onprogress: (p) => { if (!firstAt) firstAt = Date.now(); progress.push(p); },
        });
        const endedAt = Date.now();
        assert.match(text(r), /first[\s\S]*second/);
        assert.match(progress[0].message, /first/);
        // The first line came while the cell still slept (not with the result).
        assert.ok(endedAt - firstAt >= 1000, `first progress ${firstAt - started} ms, result ${endedAt - started} ms`);
    });

    await t.test('run_cell: cancelling time.sleep(60) interrupts it; the session is still usable', async () => {
        await client.callTool({ name: 'run_cell', arguments: { code: 'kept = 7' } });
        const controller = new AbortController();
        const call = client.callTool({ name: 'run_cell', arguments: { code: 'import time\ntime.sleep(60)\nkept = 0' } },
            undefined, { signal: controller.signal });
        await new Promise((r) => setTimeout(r, 1500));
        const cancelledAt = Date.now();
        controller.abort('changed my mind');
        await assert.rejects(call);
        // The session's next call waits for the cancelled one: it ends soon
        // only because the kernel was interrupted (the sleep had 58 s left).
        const after = await client.callTool({ name: 'run_cell', arguments: { code: 'print(kept)' } });
        const elapsed = Date.now() - cancelledAt;
        assert.equal(text(after).trim(), '7');
        assert.ok(elapsed < 10000, `the session answered ${elapsed} ms after the cancel`);
    });

    await t.test('run_code: cancelling kills the process group', async () => {
        const controller = new AbortController();
        const call = client.callTool({ name: 'run_code', arguments: {
            code: 'sleep 60 & sleep 60; wait', language: 'bash' } }, undefined, { signal: controller.signal });
        let sleepers = [];
        assert.ok(await eventually(() => {
            // The block's two `sleep 60` (not the executor's keeper, a `sleep infinity`
            // that carries its temporary work dir on kernex's reaper).
            sleepers = descendants(s.pid).filter((p) => {
                try { return require_cmdline(p).join(' ') === 'sleep 60'; } catch { return false; }
            });
            return sleepers.length === 2;
        }, 10000), 'both sleeps started');
        controller.abort();
        await assert.rejects(call);
        assert.ok(await eventually(() => sleepers.every((p) => !alive(p)), 10000), 'both sleeps were killed');
    });

    await client.close();
    assert.ok(await eventually(() => !alive(s.pid)));
    assert.deepEqual(s.dir.leftovers(), []);
    s.dir.remove();
});

import fs from 'node:fs';
function require_cmdline(pid) {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
}
