/** Where code says what is happening: the CLI prints it (stderr), tests silence it. */
export interface Logger {
  info(message: string): void;
  warn(message: string): void;
}

export const silentLogger: Logger = { info: () => undefined, warn: () => undefined };
