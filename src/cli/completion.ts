import { type Command, InvalidArgumentError } from 'commander';
import type { Io } from './io.js';

/**
 * `sluice completion bash|zsh|fish`: a completion script for the shell, made from the program's
 * own commands and options, so that it never lists a command that is not there.
 */

const SHELLS = ['bash', 'zsh', 'fish'] as const;
type Shell = (typeof SHELLS)[number];

/** Values offered after `-o`/`--output` (every command's formats together). */
const OUTPUT_VALUES = ['table', 'json', 'yaml', 'value'];

interface CommandNode {
  /** The words from the program to this command: [] for the program, ['topic', 'create'], ... */
  path: string[];
  description: string;
  /** Long and short flags, e.g. ['--partitions', '-p']. */
  options: { flags: string[]; description: string; takesValue: boolean }[];
  children: CommandNode[];
}

function treeOf(command: Command, path: string[] = []): CommandNode {
  const options = command.options
    .filter((o) => !o.hidden)
    .map((o) => ({
      flags: [o.long, o.short].filter((f): f is string => f !== undefined),
      description: o.description,
      takesValue: o.required || o.optional,
    }));
  options.push({ flags: ['--help', '-h'], description: 'show help', takesValue: false });
  return {
    path,
    description: command.description(),
    options,
    children: command.commands.filter((c) => c.name() !== 'help').map((c) => treeOf(c, [...path, c.name()])),
  };
}

function walk(node: CommandNode, visit: (node: CommandNode) => void): void {
  visit(node);
  for (const child of node.children) walk(child, visit);
}

/** One line of text for a shell's single-quoted string. */
function quoted(text: string): string {
  return `'${text.split('\n')[0]!.replace(/'/g, `'\\''`)}'`;
}

function bashScript(root: CommandNode): string {
  const paths: string[] = [];
  const cases: string[] = [];
  walk(root, (node) => {
    const key = node.path.map((w) => ` ${w}`).join('');
    if (node.path.length > 0) paths.push(`"${key}"`);
    const words = [...node.children.map((c) => c.path.at(-1)!), ...node.options.flatMap((o) => o.flags)];
    cases.push(`    "${key}") words=${quoted(words.join(' '))} ;;`);
  });
  return `# bash completion for sluice: source it, or put it in /etc/bash_completion.d/sluice
#   source <(sluice completion bash)
_sluice() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}" path="" words="" i w
  if [[ "$prev" == "-o" || "$prev" == "--output" ]]; then
    COMPREPLY=( $(compgen -W ${quoted(OUTPUT_VALUES.join(' '))} -- "$cur") )
    return
  fi
  for (( i = 1; i < COMP_CWORD; i++ )); do
    w="\${COMP_WORDS[i]}"
    case "$path $w" in
      ${paths.join('|')}) path="$path $w" ;;
    esac
  done
  case "$path" in
${cases.join('\n')}
  esac
  COMPREPLY=( $(compgen -W "$words" -- "$cur") )
}
complete -o default -F _sluice sluice
`;
}

function zshScript(root: CommandNode): string {
  // zsh runs the bash function through bashcompinit: one definition of the tree for both shells.
  return `#compdef sluice
# zsh completion for sluice: put it in a directory of $fpath as _sluice, or
#   source <(sluice completion zsh)
autoload -U +X bashcompinit && bashcompinit
${bashScript(root)}`;
}

function fishScript(root: CommandNode): string {
  const lines = [
    '# fish completion for sluice: sluice completion fish > ~/.config/fish/completions/sluice.fish',
    'complete -c sluice -f',
  ];
  walk(root, (node) => {
    const seen = node.path.map((w) => `__fish_seen_subcommand_from ${w}`);
    const childNames = node.children.map((c) => c.path.at(-1)!);
    const here = node.path.length === 0 ? ['__fish_use_subcommand'] : childNames.length > 0 ? seen : seen;
    const notDeeper =
      childNames.length > 0 ? [`not __fish_seen_subcommand_from ${childNames.join(' ')}`] : [];
    for (const child of node.children)
      lines.push(
        `complete -c sluice -n ${quoted([...(node.path.length === 0 ? here : seen), ...(node.path.length === 0 ? [] : notDeeper)].join('; and '))} -a ${child.path.at(-1)} -d ${quoted(child.description)}`,
      );
    const condition = [...here, ...notDeeper].join('; and ');
    for (const option of node.options) {
      const flags = option.flags
        .map((f) => (f.startsWith('--') ? `-l ${f.slice(2)}` : `-s ${f.slice(1)}`))
        .join(' ');
      const values = option.flags.includes('--output')
        ? ` -x -a ${quoted(OUTPUT_VALUES.join(' '))}`
        : option.takesValue
          ? ' -r'
          : '';
      lines.push(
        `complete -c sluice -n ${quoted(condition)} ${flags}${values} -d ${quoted(option.description)}`,
      );
    }
  });
  return `${lines.join('\n')}\n`;
}

/** The completion script of `program` for `shell`. */
export function completionScript(program: Command, shell: Shell): string {
  const root = treeOf(program);
  if (shell === 'bash') return bashScript(root);
  if (shell === 'zsh') return zshScript(root);
  return fishScript(root);
}

function shellOf(value: string): Shell {
  if (!(SHELLS as readonly string[]).includes(value))
    throw new InvalidArgumentError(`the shell must be bash, zsh or fish, got ${value}`);
  return value as Shell;
}

export function addCompletionCommand(program: Command, io: Io): void {
  program
    .command('completion')
    .description(
      'print a completion script: source <(sluice completion bash), or zsh likewise; fish: sluice completion fish > ~/.config/fish/completions/sluice.fish',
    )
    .argument('<shell>', 'bash, zsh or fish', shellOf)
    .action((shell: Shell) => {
      io.stdout.write(completionScript(program, shell));
    });
}
