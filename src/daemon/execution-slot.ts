/**
 * At most one product touches the robot at a time. The claim is made synchronously when a
 * pre-check passes, so two products can never both pass into backup; it is freed when the
 * holder's run leaves the executing states.
 */
import type { Steps } from '../../machines/types.js';

export class ExecutionSlot {
  private holder: string | null = null;

  get current(): string | null {
    return this.holder;
  }

  /** A product restored in an executing state holds the slot from the start. */
  claim(product: string): void {
    this.holder = product;
  }

  release(product: string): void {
    if (this.holder === product) this.holder = null;
  }

  /** The product's steps with a pre-check that refuses while another product holds the slot. */
  guard(product: string, steps: Steps): Steps {
    const busy = () => (this.holder !== null && this.holder !== product ? this.holder : null);
    return {
      ...steps,
      preCheck: async (input, signal) => {
        const before = busy();
        if (before) {
          return { ok: false, reasons: [{ code: 'ANOTHER_UPDATE_RUNNING', message: `${before} is being updated; one update at a time` }] };
        }
        const result = await steps.preCheck(input, signal);
        const after = busy();
        if (result.ok && after) {
          return { ok: false, reasons: [{ code: 'ANOTHER_UPDATE_RUNNING', message: `${after} is being updated; one update at a time` }] };
        }
        if (result.ok) this.holder = product;
        return result;
      },
    };
  }
}
