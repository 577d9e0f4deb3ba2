package org.cryoprotect.proxy.testing;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

/** External programs the tests drive (promtool, npm): found on PATH, run with a deadline. */
public final class Commands {
  private Commands() {}

  public record Result(int exit, String output) {}

  /** {@code name} on PATH, or empty: tests that need it skip with an assumption. */
  public static Optional<Path> find(String name) {
    String path = System.getenv().getOrDefault("PATH", "/usr/local/bin:/usr/bin:/bin");
    for (String dir : path.split(File.pathSeparator)) {
      Path candidate = Path.of(dir, name);
      if (Files.isExecutable(candidate)) {
        return Optional.of(candidate);
      }
    }
    return Optional.empty();
  }

  /**
   * {@code npm ci} in {@code project} (its package-lock.json pins everything), from the cache
   * first.
   */
  public static Result npmCi(Path npm, Path project) throws IOException, InterruptedException {
    return run(
        project,
        Duration.ofMinutes(5),
        null,
        List.of(npm.toString(), "ci", "--prefer-offline", "--no-audit", "--no-fund"));
  }

  /**
   * Runs {@code command} in {@code dir} with stdin from {@code input} (or nothing), stdout and
   * stderr together; a command still running at {@code timeout} is killed and reported as exit -1.
   */
  public static Result run(Path dir, Duration timeout, String input, List<String> command)
      throws IOException, InterruptedException {
    Path out = Files.createTempFile("cryoproxy-cmd", ".out");
    try {
      ProcessBuilder builder =
          new ProcessBuilder(command)
              .directory(dir.toFile())
              .redirectErrorStream(true)
              .redirectOutput(out.toFile());
      if (input == null) {
        builder.redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
      }
      Process process = builder.start();
      if (input != null) {
        try (var stdin = process.getOutputStream()) {
          stdin.write(input.getBytes(StandardCharsets.UTF_8));
        }
      }
      if (!process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
        process.destroyForcibly().waitFor();
        return new Result(-1, Files.readString(out) + "\n(killed after " + timeout + ")");
      }
      return new Result(process.exitValue(), Files.readString(out));
    } finally {
      Files.deleteIfExists(out);
    }
  }
}
