/**
 * Bash completion scripts generated from the commander programs themselves, so the completion
 * cannot drift from the command line: every subcommand and option a program declares is offered,
 * and nothing else. The .deb build (scripts/package-deb.sh) runs
 * `node dist/src/cli/completion.js otactl|otad|ota-repo` and ships the output under
 * /usr/share/bash-completion/completions/; test/unit/cli/completion.test.ts runs the generated
 * function in a real bash and checks every subcommand is completed.
 */
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type { Command, Option } from 'commander';

interface Level {
  /** The words after the program name that lead here, space-separated ('' at the top). */
  path: string;
  commands: string[];
  options: string[];
}

const flagsOf = (o: Option): string[] => [o.short, o.long].filter((f): f is string => typeof f === 'string');
/** An option that takes a value (`<x>` or `[x]`): its next word is the value, not a command. */
const takesValue = (o: Option): boolean => o.required || o.optional;
/** Value options that name a file or folder complete paths; the others offer their choices, if any. */
const wantsPath = (o: Option): boolean => /file|dir|config|path/i.test(`${o.long ?? ''} ${o.flags}`);

function walk(cmd: Command, prefix: string, levels: Level[], valueOptions: Map<string, Option>): void {
  const own = cmd.options as readonly Option[];
  for (const o of own) if (takesValue(o)) for (const f of flagsOf(o)) valueOptions.set(f, o);
  const commands = cmd.commands.map((c) => c.name());
  // commander answers `help [command]` wherever a command has subcommands.
  if (commands.length > 0) commands.push('help');
  levels.push({ path: prefix, commands, options: [...own.flatMap(flagsOf), '-h', '--help'] });
  for (const c of cmd.commands) walk(c, prefix === '' ? c.name() : `${prefix} ${c.name()}`, levels, valueOptions);
}

const q = (s: string): string => `'${s.replaceAll("'", "'\\''")}'`;

/** The completion script for one program: a function _<name> and its `complete -F` line. */
export function bashCompletion(program: Command): string {
  const name = program.name();
  const fn = `_${name.replace(/[^\w]/g, '_')}`;
  const levels: Level[] = [];
  const valueOptions = new Map<string, Option>();
  walk(program, '', levels, valueOptions);
  const subcommandsAt = levels.map((l) => `    ${q(l.path)}) cmds=${q(l.commands.join(' '))}; opts=${q(l.options.join(' '))} ;;`).join('\n');
  const valueFlags = [...valueOptions.keys()];
  const valueCases = [...valueOptions.entries()]
    .map(([flag, o]) => {
      const choices = o.argChoices;
      const body = choices ? `COMPREPLY=($(compgen -W ${q(choices.join(' '))} -- "$cur"))` : wantsPath(o) ? 'COMPREPLY=($(compgen -f -- "$cur")); compopt -o filenames 2>/dev/null' : 'COMPREPLY=()';
      return `    ${flag}) ${body}; return ;;`;
    })
    .join('\n');
  return `# bash completion for ${name}: generated from its command line by src/cli/completion.ts; do not edit.
${fn}() {
  local cur prev word path="" i cmds opts
  cur="\${COMP_WORDS[COMP_CWORD]}"
  prev="\${COMP_WORDS[COMP_CWORD-1]}"
  # The subcommand path so far: words that are commands of the level reached, skipping options
  # and the values of the options that take one.
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="\${COMP_WORDS[i]}"
    case "$word" in
      -*=*) ;;
      -*) case " ${valueFlags.join(' ')} " in *" $word "*) ((i++)) ;; esac ;;
      *) ${fn}_level "$path"
         case " $cmds " in *" $word "*) path="\${path:+$path }$word" ;; esac ;;
    esac
  done
  if ((COMP_CWORD > 1)); then
    case "$prev" in
${valueCases}
    esac
  fi
  ${fn}_level "$path"
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  else
    COMPREPLY=($(compgen -W "$cmds" -- "$cur"))
  fi
}
${fn}_level() {
  case "$1" in
${subcommandsAt}
    *) cmds=""; opts="" ;;
  esac
}
complete -F ${fn} ${name}
`;
}

/** The programs completion is generated for, by command name. Loaded lazily: each is a module tree. */
export const COMPLETED_PROGRAMS: Record<string, () => Promise<Command>> = {
  otactl: async () => (await import('./otactl/program.js')).otactlProgram,
  otad: async () => (await import('./otad-program.js')).otadProgram(),
  'ota-repo': async () => (await import('./ota-repo.js')).otaRepoProgram(),
};

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const name = process.argv[2] ?? '';
  const load = COMPLETED_PROGRAMS[name];
  if (load === undefined) {
    process.stderr.write(`usage: completion.js ${Object.keys(COMPLETED_PROGRAMS).join('|')}\n`);
    process.exitCode = 2;
  } else {
    process.stdout.write(bashCompletion(await load()));
  }
}
