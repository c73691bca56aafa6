// Heartbeater: sends the datanode's Heartbeat (capacity, usage, groups and their state and
// length, health) to the master on an interval, and hands the answer (groups of deleted
// volumes to remove) to `onAck`. A missing or failing master only produces warnings
// (rate-limited), never a failure.
import { errorMessage, silentLogger, type Logger } from '../common/index.js';
import type { RpcPool } from '../rpc/index.js';
import { masterHeartbeatMethod, type HeartbeatAck, type HeartbeatMsg } from './service.js';

export interface HeartbeaterOptions {
  /** The master's host:port. */
  master: string;
  pool: RpcPool;
  /** Builds the message to send (DataNode.heartbeat). */
  build: () => Promise<HeartbeatMsg>;
  /** The master's answer with the message it answers (DataNode.onHeartbeatAck). */
  onAck?: (ack: HeartbeatAck, sent: HeartbeatMsg) => Promise<void>;
  intervalMs?: number;
  deadlineMs?: number;
  logger?: Logger;
}

export class Heartbeater {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private failuresInRow = 0;
  /** Heartbeats the master acknowledged. */
  sent = 0;
  lastError: string | undefined;
  private readonly log: Logger;

  constructor(private readonly o: HeartbeaterOptions) {
    this.log = o.logger ?? silentLogger;
  }

  start(): void {
    if (this.timer) return;
    void this.beat();
    this.timer = setInterval(() => void this.beat(), this.o.intervalMs ?? 3000);
    this.timer.unref();
  }

  /** Sends one heartbeat now; skipped if one is still in flight. */
  async beat(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      const msg = await this.o.build();
      const ack = await this.o.pool.get(this.o.master).call(masterHeartbeatMethod, msg, { deadlineMs: this.o.deadlineMs ?? 5000 });
      this.sent++;
      await this.o.onAck?.(ack, msg);
      if (this.failuresInRow > 0) this.log.info({ master: this.o.master }, 'blockgroup: master reachable again');
      this.failuresInRow = 0;
      this.lastError = undefined;
    } catch (err) {
      this.failuresInRow++;
      this.lastError = errorMessage(err);
      // Log the first failure and then every 20th, so a long master outage does not flood logs.
      if (this.failuresInRow === 1 || this.failuresInRow % 20 === 0) {
        this.log.warn({ master: this.o.master, failures: this.failuresInRow, err: this.lastError }, 'blockgroup: heartbeat to master failed');
      }
    } finally {
      this.running = false;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
