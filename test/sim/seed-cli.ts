/**
 * What every simulation's command line does: `SEED=n` replays one seed (the last trace lines and
 * the replay command on failure; `TRACE=1` prints the whole history), else `SEEDS=n FIRST=m` runs
 * seeds m..m+n-1 and prints how many ran clean, stopping after 10 failures.
 */
export interface SeedCli {
  /** One seed with its transcript kept (all of it with `whole`). */
  replay(seed: number, whole: boolean): { run(): Promise<unknown>; transcript: string[] };
  /** One seed of a soak. */
  run(seed: number): Promise<unknown>;
  replayCommand(seed: number): string;
}

export async function seedCli(sim: SeedCli): Promise<void> {
  const seed = process.env.SEED;
  if (seed !== undefined) {
    const s = Number(seed);
    const whole = process.env.TRACE === '1';
    const one = sim.replay(s, whole);
    try {
      const result = await one.run();
      if (whole) console.log(one.transcript.join('\n'));
      console.log(`seed ${s}: ok`, JSON.stringify(result));
    } catch (error) {
      console.log(one.transcript.slice(whole ? 0 : -200).join('\n'));
      console.error(
        `\n${(error as Error).message}\nreplay: ${sim.replayCommand(s)}${whole ? '' : ' (TRACE=1 for the whole history)'}`,
      );
      process.exitCode = 1;
    }
    return;
  }
  const count = Number(process.env.SEEDS ?? 1000);
  const first = Number(process.env.FIRST ?? 1);
  const started = performance.now();
  let failed = 0;
  let ran = 0;
  for (let s = first; s < first + count; s++) {
    ran++;
    try {
      await sim.run(s);
    } catch (error) {
      failed++;
      console.error(`${(error as Error).message.split('\n')[0]}\n  replay: ${sim.replayCommand(s)}`);
      if (failed >= 10) break;
    }
  }
  console.log(
    `${ran} seeds from ${first}: ${ran - failed} clean, ${failed} failed, ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
  if (failed > 0) process.exitCode = 1;
}
