/**
 * Offline replay of an exported run (`otactl export RUN`): the recorded events are fed into the
 * pure update machine, with no side effects, and the state sequence it produces is compared with
 * the recorded one. Step actors never resolve; the recorded `xstate.done.actor.*` and
 * `xstate.error.actor.*` events (with their output or error) are delivered instead, so the machine
 * decides exactly as it did on the robot. A transition from "(none)" marks a daemon restart: the
 * replay restores the snapshot recorded there, as the daemon did.
 */
import { createActor, fromPromise, type Actor } from 'xstate';
import { updateMachine, type UpdateMachine } from '../../machines/update-machine.js';
import { MACHINE_VERSION, STEP_NAMES, type MachineInput, type MachinePolicy, type UpdateContext } from '../../machines/types.js';
import { OtaError } from '../core/errors.js';
import type { RunExport } from '../daemon/control.js';

export interface ReplayStep {
  seq: number;
  event: string;
  expected: { from: string; to: string };
  actual: string;
  ok: boolean;
  /** The daemon restarted here: the recorded snapshot was restored rather than replayed. */
  restart?: boolean;
}

export interface ReplayDivergence {
  index: number;
  seq: number;
  event: string;
  expected: string;
  actual: string;
  message: string;
}

export interface ReplayReport {
  runId: string;
  product: string;
  machineVersion: number;
  recordedMachineVersion: number;
  startState: string;
  expectedStates: string[];
  actualStates: string[];
  steps: ReplayStep[];
  divergence: ReplayDivergence | null;
  /** Whether the replayed final context equals the recorded one (null: no snapshot recorded). */
  finalContextMatches: boolean | null;
}

const DEFAULT_POLICY: MachinePolicy = { choiceTimeoutMs: 24 * 3600_000, defaultChoice: 'SCHEDULE_3AM', confirmTimeoutMs: 0, preCheckRetryMs: 600_000 };

function offlineMachine() {
  const never = fromPromise<never, unknown>(() => new Promise<never>(() => {}));
  const actors = Object.fromEntries(STEP_NAMES.map((n) => [n, never]));
  return updateMachine.provide({ actors: actors as never });
}

function contextOf(snapshot: unknown): UpdateContext | null {
  const c = (snapshot as { context?: unknown } | null)?.context;
  return c && typeof c === 'object' ? (c as UpdateContext) : null;
}

export function validateExport(value: unknown): RunExport {
  const v = value as Partial<RunExport> | null;
  if (!v || typeof v !== 'object' || v.format !== 'otad-run/1' || !v.run || !Array.isArray(v.transitions)) {
    throw new OtaError('API_INVALID_REQUEST', 'not an otad run export: expected an object with format "otad-run/1", run and transitions (made by `otactl export RUN`)');
  }
  return v as RunExport;
}

export function replayRun(exported: RunExport): ReplayReport {
  const ex = validateExport(exported);
  const machine = offlineMachine();
  const firstCtx = contextOf(ex.initialSnapshot) ?? contextOf(ex.transitions[0]?.snapshot);
  const start = (snapshot: unknown): Actor<UpdateMachine> => {
    const actor = snapshot
      ? createActor(machine, { snapshot: snapshot as never, input: undefined as never })
      : createActor(machine, {
          input: {
            product: ex.run.product,
            policy: firstCtx?.policy ?? DEFAULT_POLICY,
            installedVersion: ex.run.fromVersion,
            now: ex.run.startedAt,
          } satisfies MachineInput,
        });
    // Errors inside the offline machine are part of the report, not a crash of the caller.
    actor.subscribe({ error: () => undefined });
    actor.start();
    return actor;
  };

  let actor = start(ex.initialSnapshot);
  const startState = String(actor.getSnapshot().value);
  const steps: ReplayStep[] = [];
  let divergence: ReplayDivergence | null = null;
  let current = startState;

  for (const [index, t] of ex.transitions.entries()) {
    if (t.from === '(none)') {
      actor.stop();
      actor = start(t.snapshot ?? null);
      current = String(actor.getSnapshot().value);
      const ok = current === t.to;
      steps.push({ seq: t.seq, event: t.eventType, expected: { from: t.from, to: t.to }, actual: current, ok, restart: true });
      if (!ok) {
        divergence = { index, seq: t.seq, event: t.eventType, expected: t.to, actual: current, message: `after the restart at seq ${t.seq} the recorded snapshot restores into ${current}, not ${t.to}` };
        break;
      }
      continue;
    }
    if (current !== t.from) {
      divergence = { index, seq: t.seq, event: t.eventType, expected: t.from, actual: current, message: `before seq ${t.seq} the recording was in ${t.from} but the replay is in ${current}` };
      break;
    }
    const event = (t.event && typeof t.event === 'object' ? t.event : { type: t.eventType }) as { type: string };
    try {
      actor.send(event as never);
    } catch (error) {
      divergence = { index, seq: t.seq, event: t.eventType, expected: t.to, actual: current, message: `the machine refused ${t.eventType}: ${(error as Error).message}` };
      break;
    }
    const snap = actor.getSnapshot();
    current = snap.status === 'active' ? String(snap.value) : `(${snap.status})`;
    const ok = current === t.to;
    steps.push({ seq: t.seq, event: t.eventType, expected: { from: t.from, to: t.to }, actual: current, ok });
    if (!ok) {
      divergence = { index, seq: t.seq, event: t.eventType, expected: t.to, actual: current, message: `on ${t.eventType} at seq ${t.seq} the recording went to ${t.to} but the replay went to ${current}` };
      break;
    }
  }

  const last = ex.transitions.at(-1);
  let finalContextMatches: boolean | null = null;
  if (!divergence && last?.snapshot) {
    const recorded = contextOf(last.snapshot);
    // Fields added to the context after the run was recorded are not compared: the recording cannot hold them.
    const actual = actor.getSnapshot().context as unknown as Record<string, unknown>;
    const comparable = recorded === null ? actual : Object.fromEntries(Object.keys(recorded).map((k) => [k, actual[k]]));
    finalContextMatches = JSON.stringify(recorded) === JSON.stringify(comparable);
  }
  actor.stop();
  return {
    runId: ex.run.runId,
    product: ex.run.product,
    machineVersion: MACHINE_VERSION,
    recordedMachineVersion: ex.machineVersion,
    startState,
    expectedStates: ex.transitions.map((t) => t.to),
    actualStates: steps.map((s) => s.actual),
    steps,
    divergence,
    finalContextMatches,
  };
}

/** A readable report for people: one line per transition, then the verdict. */
export function formatReplay(r: ReplayReport): string {
  const lines = [`replay of run ${r.runId} (${r.product}), machine v${r.machineVersion}${r.recordedMachineVersion !== r.machineVersion ? `, recorded with v${r.recordedMachineVersion}` : ''}`, `  start: ${r.startState}`];
  for (const s of r.steps) {
    lines.push(`  ${s.ok ? 'ok ' : 'DIFF'} #${s.seq} ${s.event}: ${s.expected.from} → ${s.expected.to}${s.ok ? '' : ` (replay: ${s.actual})`}${s.restart ? ' [daemon restart: snapshot restored]' : ''}`);
  }
  if (r.divergence) lines.push(`DIVERGED at transition ${r.divergence.index + 1} (seq ${r.divergence.seq}): ${r.divergence.message}`);
  else lines.push(`same state sequence: ${r.actualStates.length} transitions${r.finalContextMatches === false ? ' (the final context differs from the recorded one)' : ''}`);
  return lines.join('\n');
}
