// Commander's side of the CLI's value parsers (format.ts, shape-buckets.ts): kept apart from them
// because commander is ESM-only, and the unit tests load the parsers without it.
import { InvalidArgumentError } from 'commander';

/** An option's parser for commander: what `parse` throws becomes a usage error (commander prints it with the usage). */
export function optionParser<T>(parse: (value: string, previous: T) => T): (value: string, previous: T) => T {
  return (value, previous) => {
    try {
      return parse(value, previous);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  };
}
