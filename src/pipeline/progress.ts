import ora, { type Ora } from 'ora';
import type { LayerProgress } from '../pass/pass.js';

/**
 * Progress on stderr: an ora spinner with "pass i/N · layer j/M · elapsed · ETA" on a terminal,
 * plain lines when stderr is not a TTY or NO_COLOR is set (CI logs stay readable).
 */
export interface Progress extends LayerProgress {
  pass(index: number, total: number, id: string, layers: number): void;
  passDone(index: number, total: number, id: string, ms: number): void;
  /** a stage outside the passes: loading, calibrating, writing, evaluating */
  stage(text: string): void;
  warn(text: string): void;
  stop(): void;
}

export function wantsFancyProgress(stream: NodeJS.WriteStream = process.stderr): boolean {
  return Boolean(stream.isTTY) && !process.env.NO_COLOR && process.env.TERM !== 'dumb';
}

function seconds(ms: number): string {
  return ms < 60_000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.floor(ms / 60_000)}m${Math.round((ms % 60_000) / 1000)}s`;
}

export function createProgress(write: (line: string) => void, fancy: boolean): Progress {
  let spinner: Ora | undefined = fancy ? ora({ stream: process.stderr }) : undefined;
  let passLabel = '';
  let passStart = 0;
  let lastPlain = 0;
  const say = (text: string) => {
    if (spinner) {
      spinner.text = text;
      // draw now: during synchronous work (tokenizing, writing) the spinner's timer cannot fire
      if (!spinner.isSpinning) spinner.start();
      else spinner.render();
    } else write(text);
  };
  return {
    pass(index, total, id, layers) {
      passLabel = `pass ${index + 1}/${total} ${id}`;
      passStart = performance.now();
      say(`${passLabel}: ${layers} layer${layers === 1 ? '' : 's'}`);
    },
    layer(index, total, name) {
      const elapsed = performance.now() - passStart;
      // plain logs: at most one layer line a second, plus the last layer
      if (!spinner && index !== total - 1 && performance.now() - lastPlain < 1000) return;
      lastPlain = performance.now();
      const eta = index > 0 ? (elapsed / index) * (total - index) : undefined;
      say(`${passLabel} · layer ${index + 1}/${total} ${name} · ${seconds(elapsed)}${eta !== undefined ? ` · ETA ${seconds(eta)}` : ''}`);
    },
    step(index, total, text) {
      // plain logs: one line every 5 seconds, plus the last step
      if (!spinner && index !== total - 1 && performance.now() - lastPlain < 5000) return;
      lastPlain = performance.now();
      const elapsed = performance.now() - passStart;
      const eta = index > 0 ? (elapsed / index) * (total - index) : undefined;
      say(`${passLabel} · step ${index + 1}/${total} · ${text} · ${seconds(elapsed)}${eta !== undefined ? ` · ETA ${seconds(eta)}` : ''}`);
    },
    passDone(index, total, id, ms) {
      const text = `pass ${index + 1}/${total} ${id} done in ${seconds(ms)}`;
      if (spinner) spinner.succeed(text);
      else write(text);
    },
    stage(text) {
      say(text);
    },
    warn(text) {
      if (spinner) spinner.warn(text);
      else write(`warning: ${text}`);
    },
    stop() {
      spinner?.stop();
      spinner = undefined;
    },
  };
}
