package org.cryoprotect.demo;

import org.cryoprotect.proxy.cli.Main;
import picocli.CommandLine;

/** The demo jar's entry point: every {@code cryoproxy} command, plus {@code demo}. */
public final class DemoMain {
  private DemoMain() {}

  public static void main(String[] args) {
    System.exit(new CommandLine(new Main()).addSubcommand("demo", new Demo()).execute(args));
  }
}
