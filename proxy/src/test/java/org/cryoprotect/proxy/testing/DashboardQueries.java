package org.cryoprotect.proxy.testing;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * Every PromQL expression the repository's {@code dashboards/} folder holds: each target of each
 * Grafana panel (rows included), each query variable, and each alert or recording rule. Tests
 * evaluate them against a real Prometheus ({@link PrometheusServer}) or check the metric names they
 * use against what the proxy exports.
 */
public final class DashboardQueries {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());
  private static final Pattern LABEL_VALUES =
      Pattern.compile("^\\s*label_values\\((.*),\\s*[a-zA-Z_][a-zA-Z0-9_]*\\s*\\)\\s*$");
  private static final Pattern VARIABLE = Pattern.compile("\\$\\{?([a-zA-Z_][a-zA-Z0-9_]*)}?");

  private DashboardQueries() {}

  public enum Kind {
    PANEL,
    VARIABLE,
    ALERT
  }

  /**
   * One expression; {@code where} names the file and the panel, variable or rule it comes from, for
   * failure messages.
   */
  public record Query(Kind kind, String where, String expr) {
    /**
     * The expression as Prometheus can run it: Grafana's interval variables become {@code 1m} (at
     * least four samples at a test's 1 s scrape interval, and fine at 15 s), every other dashboard
     * variable {@code .*} (the dashboards use them only in {@code =~} matchers), and a {@code
     * label_values(selector, label)} variable its selector.
     */
    public String promql() {
      String e = expr;
      if (kind == Kind.VARIABLE) {
        Matcher m = LABEL_VALUES.matcher(e);
        if (!m.matches()) {
          throw new IllegalStateException(where + ": not label_values(selector, label): " + e);
        }
        e = m.group(1);
      }
      e = e.replace("$__rate_interval", "1m").replace("${__rate_interval}", "1m");
      e = e.replace("$__interval", "1m").replace("${__interval}", "1m");
      e = e.replace("$__range", "5m").replace("${__range}", "5m");
      return VARIABLE.matcher(e).replaceAll(".*");
    }

    @Override
    public String toString() {
      return where + ": " + expr;
    }
  }

  /** {@code dashboards/} at the repository root, found from the working directory upwards. */
  public static Path dashboardsDir() {
    for (Path dir = Path.of("").toAbsolutePath(); dir != null; dir = dir.getParent()) {
      if (Files.isDirectory(dir.resolve("dashboards/grafana"))) {
        return dir.resolve("dashboards");
      }
    }
    throw new IllegalStateException("no dashboards/grafana above " + Path.of("").toAbsolutePath());
  }

  public static List<Path> dashboardFiles() {
    try (Stream<Path> files = Files.list(dashboardsDir().resolve("grafana"))) {
      return files.filter(f -> f.toString().endsWith(".json")).sorted().toList();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** Rule files: everything under {@code dashboards/prometheus} but the config and the tests. */
  public static List<Path> ruleFiles() {
    try (Stream<Path> files = Files.list(dashboardsDir().resolve("prometheus"))) {
      return files
          .filter(f -> f.toString().endsWith(".yml"))
          .filter(f -> !f.getFileName().toString().equals("prometheus.yml"))
          .filter(f -> !f.getFileName().toString().endsWith(".test.yml"))
          .sorted()
          .toList();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  public static List<Query> all() {
    List<Query> all = new ArrayList<>();
    all.addAll(dashboards());
    all.addAll(alerts());
    return all;
  }

  /** Panel targets and query variables of every dashboard. */
  public static List<Query> dashboards() {
    List<Query> queries = new ArrayList<>();
    for (Path file : dashboardFiles()) {
      JsonNode dashboard = read(JSON, file);
      String name = file.getFileName().toString();
      panels(name, dashboard.path("panels"), queries);
      for (JsonNode variable : dashboard.path("templating").path("list")) {
        if (variable.path("type").asText().equals("query")) {
          JsonNode query = variable.path("query");
          String expr = query.isTextual() ? query.asText() : query.path("query").asText();
          queries.add(
              new Query(Kind.VARIABLE, name + " variable " + variable.path("name").asText(), expr));
        }
      }
    }
    return queries;
  }

  private static void panels(String file, JsonNode panels, List<Query> out) {
    for (JsonNode panel : panels) {
      String where = file + " panel \"" + panel.path("title").asText() + "\"";
      for (JsonNode target : panel.path("targets")) {
        if (target.hasNonNull("expr") && !target.path("hide").asBoolean(false)) {
          out.add(
              new Query(
                  Kind.PANEL,
                  where + " " + target.path("refId").asText(),
                  target.path("expr").asText()));
        }
      }
      panels(file, panel.path("panels"), out); // rows, collapsed or not, nest their panels
    }
  }

  /** Every rule's expression in {@link #ruleFiles()}. */
  public static List<Query> alerts() {
    List<Query> queries = new ArrayList<>();
    for (Path file : ruleFiles()) {
      JsonNode rules = read(YAML, file);
      for (JsonNode group : rules.path("groups")) {
        for (JsonNode rule : group.path("rules")) {
          String name =
              rule.hasNonNull("alert") ? rule.path("alert").asText() : rule.path("record").asText();
          queries.add(
              new Query(
                  Kind.ALERT, file.getFileName() + " rule " + name, rule.path("expr").asText()));
        }
      }
    }
    return queries;
  }

  private static final Set<String> KEYWORDS =
      Set.of(
          "by",
          "without",
          "on",
          "ignoring",
          "group_left",
          "group_right",
          "bool",
          "and",
          "or",
          "unless",
          "offset",
          "inf",
          "nan");
  private static final Pattern STRING =
      Pattern.compile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'");
  private static final Pattern BRACES = Pattern.compile("\\{[^}]*}|\\[[^]]*]");
  private static final Pattern GROUPING =
      Pattern.compile("\\b(by|without|on|ignoring|group_left|group_right)\\s*\\([^)]*\\)");
  private static final Pattern IDENTIFIER =
      Pattern.compile("(?<![\\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\\s*\\()?");

  /**
   * The metric names an expression selects: identifiers left once strings, label matchers, range
   * selectors and grouping clauses are taken out, that are neither function calls nor keywords.
   */
  public static Set<String> metricNames(String promql) {
    String e = STRING.matcher(promql).replaceAll("\"\"");
    e = BRACES.matcher(e).replaceAll(" ");
    e = GROUPING.matcher(e).replaceAll(" ");
    Set<String> names = new TreeSet<>();
    Matcher m = IDENTIFIER.matcher(e);
    while (m.find()) {
      if (m.group(2) == null && !KEYWORDS.contains(m.group(1).toLowerCase())) {
        names.add(m.group(1));
      }
    }
    return names;
  }

  private static JsonNode read(ObjectMapper mapper, Path file) {
    try {
      return mapper.readTree(file.toFile());
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read " + file, e);
    }
  }
}
