// Drives a Flue for Python server with the official TypeScript clients, as a user of them would.
// Usage: node drive.mjs <baseUrl> <adminToken> <report.json>
// Every step asserts what a consumer written for Flue relies on; the recorded events go to the
// report, which tests/test_official_sdk.py type-checks against the SDK's own event union.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createFlueClient } from '@flue/sdk';
import { createFlueClient as createLegacyClient } from '@flue/sdk-legacy';

const [baseUrl, adminToken, reportPath] = process.argv.slice(2);
const client = createFlueClient({ baseUrl });
const report = {};
const USAGE_KEYS = ['cacheRead', 'cacheWrite', 'cost', 'input', 'output', 'totalTokens'];
const COST_KEYS = ['cacheRead', 'cacheWrite', 'input', 'output', 'total'];

function checkUsage(usage) {
  assert.deepEqual(Object.keys(usage).sort(), USAGE_KEYS);
  assert.deepEqual(Object.keys(usage.cost).sort(), COST_KEYS);
  assert.ok(usage.totalTokens > 0 && usage.input > 0 && usage.output > 0);
}

// Reads the instance's stream from the admission until the submission's `idle`, as a consumer
// that waits for idle does; returns the submission's events.
async function untilIdle(name, id, admission) {
  const events = [];
  const stream = client.agents.stream(name, id, { offset: admission.offset });
  for await (const event of stream) {
    if (event.submissionId !== admission.submissionId) continue;
    events.push(event);
    if (event.type === 'idle') break;
  }
  stream.cancel();
  return events;
}

// 1. A plain prompt, waiting for the result.
const prompted = await client.agents.prompt('echo', 'sdk-prompt', { message: 'hi' });
assert.equal(prompted.result.text, 'echo: hi');
checkUsage(prompted.result.usage);
assert.deepEqual(prompted.result.model, { provider: 'mock', id: 'echo-model' });
assert.equal(prompted.offset, '-1');
assert.ok(prompted.streamUrl.endsWith('/agents/echo/sdk-prompt') && prompted.submissionId);

// 2. send, then stream until idle: the text joined from text_delta.text, usage from `operation`.
const sent = await client.agents.send('echo', 'sdk-stream', { message: 'hello there' });
const streamed = await untilIdle('echo', 'sdk-stream', sent);
const text = streamed.filter((e) => e.type === 'text_delta').map((e) => e.text).join('');
assert.equal(text, 'echo: hello there');
const operation = streamed.find((e) => e.type === 'operation');
assert.equal(operation.operationKind, 'prompt');
assert.equal(operation.isError, false);
checkUsage(operation.usage);
assert.equal(operation.result.text, 'echo: hello there');
assert.ok(streamed.every((e) => e.v === 3 && e.instanceId === 'sdk-stream' && typeof e.eventIndex === 'number'));
// agents.wait follows the stream to submission_settled and resolves with the result
const waited = await client.agents.wait(sent);
assert.equal(waited.text, 'echo: hello there');
checkUsage(waited.usage);
report.agentEvents = streamed;

// 3. A bash tool prompt: tool_start and tool, then the answer.
const toolSent = await client.agents.send('echo', 'sdk-tool', { message: 'TOOL:bash ARGS:{"command":"echo hi"}' });
const toolEvents = await untilIdle('echo', 'sdk-tool', toolSent);
const start = toolEvents.find((e) => e.type === 'tool_start');
const done = toolEvents.find((e) => e.type === 'tool');
assert.equal(start.toolName, 'bash');
assert.deepEqual(start.args, { command: 'echo hi' });
assert.equal(done.toolCallId, start.toolCallId);
assert.equal(done.isError, false);
assert.match(done.result.content[0].text, /hi/);
assert.equal(toolEvents.filter((e) => e.type === 'turn').length, 2);
assert.equal(toolEvents.filter((e) => e.type === 'text_delta').map((e) => e.text).join(''), 'tool bash done: hi');
report.toolEvents = toolEvents;

// 4. Workflows: invoke, then follow the run's stream to its end; wait=result; run().
const invoked = await client.workflows.invoke('hello', { input: { text: 'hi' } });
assert.match(invoked.runId, /^run_[0-9A-HJKMNP-TV-Z]{26}$/);
const runEvents = [];
for await (const event of client.runs.stream(invoked.runId)) runEvents.push(event);  // ends: the stream closes
assert.equal(runEvents[0].type, 'run_start');
assert.equal(runEvents[0].workflowName, 'hello');
assert.deepEqual(runEvents[0].input, { text: 'hi' });
const end = runEvents.at(-1);
assert.equal(end.type, 'run_end');
assert.equal(end.isError, false);
assert.deepEqual(end.result, { text: 'echo: hi' });
report.runEvents = runEvents;
const waitedRun = await client.workflows.invoke('hello', { input: { text: 'yo' }, wait: 'result' });
assert.deepEqual(waitedRun.result, { text: 'echo: yo' });
const ran = await client.workflows.run('hello', { input: { text: 'run' } });
assert.deepEqual(ran.result, { text: 'echo: run' });
assert.deepEqual(await client.runs.events(invoked.runId), runEvents);

// 5. runs.get (the ?meta view).
const record = await client.runs.get(invoked.runId);
assert.equal(record.runId, invoked.runId);
assert.equal(record.workflowName, 'hello');
assert.equal(record.status, 'completed');
assert.equal(record.isError, false);
assert.deepEqual(record.result, { text: 'echo: hi' });
assert.deepEqual(record.input, { text: 'hi' });

// 6. The admin listing calls (the 0.11.1 client; the 1.0 client has no admin namespace).
const admin = createLegacyClient({ baseUrl, headers: { Authorization: `Bearer ${adminToken}` } });
const agents = await admin.admin.agents.list();
const echo = agents.items.find((a) => a.name === 'echo');
assert.deepEqual(echo.transports, { http: true });
assert.equal(echo.created, true);
const runs = await admin.admin.runs.list({ workflowName: 'hello', limit: 2 });
assert.equal(runs.items.length, 2);
assert.ok(runs.nextCursor);
const rest = await admin.admin.runs.list({ workflowName: 'hello', cursor: runs.nextCursor });
assert.equal(runs.items.length + rest.items.length, 3);
assert.ok(runs.items.every((r) => r.workflowName === 'hello' && r.status === 'completed' && !('result' in r)));
const legacyRecord = await admin.runs.get(invoked.runId);
assert.equal(legacyRecord.owner.workflowName, 'hello');
assert.deepEqual(legacyRecord.result, { text: 'echo: hi' });

writeFileSync(reportPath, JSON.stringify(report, null, 1));
console.log('ok');
