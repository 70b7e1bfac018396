// Shared by the mcp suite's tests: the official MCP TypeScript SDK client
// (installed by run_test.sh into the build dir) driving `kernex mcp` over
// stdio or Streamable HTTP, and checks that nothing is left behind.
import { spawn } from 'node:child_process';
import { after } from 'node:test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const sdk = process.env.KERNEX_MCP_SDK;
const load = (p) => import(pathToFileURL(path.join(sdk, 'dist/esm', p)).href);
export const { Client } = await load('client/index.js');
export const { StdioClientTransport } = await load('client/stdio.js');
export const { StreamableHTTPClientTransport } = await load('client/streamableHttp.js');
export const types = await load('types.js');

export const kernex = path.join(process.env.KERNEX_BUILD_DIR, 'src/cli/kernex');
export const python = '/usr/bin/python3';

// A private TMPDIR and Jupyter runtime dir per server, so that "nothing
// left" is checked by listing them.
export function scratch() {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kernex-mcp-test-'));
    const tmp = path.join(root, 'tmp');
    const runtime = path.join(root, 'runtime');
    fs.mkdirSync(tmp);
    fs.mkdirSync(runtime, { mode: 0o700 });
    return {
        root, tmp, runtime,
        env: {
            ...process.env, TMPDIR: tmp, JUPYTER_RUNTIME_DIR: runtime,
            PYDEVD_DISABLE_FILE_VALIDATION: '1',
            PATH: '/usr/bin:/bin:' + (process.env.PATH || ''),
        },
        leftovers() { return [...fs.readdirSync(tmp), ...fs.readdirSync(runtime)]; },
        remove() { fs.rmSync(root, { recursive: true, force: true }); },
    };
}

// Every process below pid (children of children...), from /proc.
export function descendants(pid) {
    const children = new Map();
    for (const entry of fs.readdirSync('/proc')) {
        if (!/^\d+$/.test(entry)) continue;
        try {
            const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
            const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
            if (!children.has(ppid)) children.set(ppid, []);
            children.get(ppid).push(Number(entry));
        } catch { /* gone */ }
    }
    const out = [];
    const walk = (p) => { for (const c of children.get(p) || []) { out.push(c); walk(c); } };
    walk(pid);
    return out;
}

export function alive(pid) {
    try {
        const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
        return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
    } catch { return false; }
}

// Servers still running when a test file ends (a failed assertion skipped
// its cleanup) are killed, so that node exits and the failure is reported.
const started = new Set();
after(() => { for (const pid of started) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } } });

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Waits until cond() holds, up to ms; returns whether it did.
export async function eventually(cond, ms = 20000) {
    const end = Date.now() + ms;
    while (Date.now() < end) {
        if (await cond()) return true;
        await sleep(50);
    }
    return await cond();
}

// The SDK client over stdio, on `kernex mcp ARGS`.
export async function stdioClient(args = [], dir = scratch(), options = {}) {
    const transport = new StdioClientTransport({
        command: kernex, args: ['mcp', ...args], env: dir.env, stderr: 'pipe', cwd: dir.root,
    });
    let stderr = '';
    transport.stderr?.on('data', (d) => { stderr += d; });
    const client = new Client({ name: 'kernex-test', version: '1.0.0' }, options);
    await client.connect(transport);
    started.add(transport.pid);
    return { client, transport, dir, pid: transport.pid, stderr: () => stderr };
}

// `kernex mcp --http 127.0.0.1:0 ARGS`: the process, its URL and token.
export async function httpServer(args = [], dir = scratch()) {
    const child = spawn(kernex, ['mcp', '--http', '127.0.0.1:0', ...args], {
        env: dir.env, cwd: dir.root, stdio: ['ignore', 'pipe', 'pipe'],
    });
    started.add(child.pid);
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    const ok = await eventually(() => /listening on (\S+)/.test(stderr) &&
        (args.includes('--http-token') || /bearer token: (\S+)/.test(stderr)), 20000);
    if (!ok) throw new Error('kernex mcp --http did not start: ' + stderr);
    const url = stderr.match(/listening on (\S+)/)[1];
    const tokenArg = args.indexOf('--http-token');
    const token = tokenArg >= 0 ? args[tokenArg + 1] : stderr.match(/bearer token: (\S+)/)[1];
    return { child, url, token, dir, exited, stderr: () => stderr };
}

export async function httpClient(url, token, options = {}) {
    const transport = new StreamableHTTPClientTransport(new URL(url), {
        requestInit: { headers: { Authorization: `Bearer ${token}` } },
    });
    const client = new Client({ name: 'kernex-test', version: '1.0.0' }, options);
    await client.connect(transport);
    return { client, transport };
}

export function text(result) {
    return result.content.filter((c) => c.type === 'text').map((c) => c.text).join('');
}

// A raw stdio conversation (no SDK): for the bad inputs the SDK never sends.
export function rawStdio(args = [], dir = scratch()) {
    const child = spawn(kernex, ['mcp', ...args], { env: dir.env, cwd: dir.root, stdio: ['pipe', 'pipe', 'pipe'] });
    started.add(child.pid);
    let buffer = '';
    const waiting = [];
    const messages = [];
    child.stdout.on('data', (d) => {
        buffer += d;
        let nl;
        while ((nl = buffer.indexOf('\n')) >= 0) {
            const line = buffer.slice(0, nl);
            buffer = buffer.slice(nl + 1);
            messages.push(JSON.parse(line));  // every line must be one JSON message
        }
        for (const w of waiting.splice(0)) w();
    });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    return {
        child, dir, exited, messages, stderr: () => stderr,
        send(obj) { child.stdin.write((typeof obj === 'string' ? obj : JSON.stringify(obj)) + '\n'); },
        // The next message the server sends (in order).
        async next(ms = 30000) {
            const end = Date.now() + ms;
            while (messages.length === 0) {
                if (Date.now() > end) throw new Error('no message from kernex mcp; stderr: ' + stderr);
                await new Promise((r) => { waiting.push(r); setTimeout(r, 100); });
            }
            return messages.shift();
        },
    };
}
