package org.cryoprotect.proxy.testing;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Pattern;

/**
 * The Prometheus text exposition format (0.0.4, and OpenMetrics' text, which shares its sample
 * syntax), parsed strictly: a malformed line throws. Tests read metric values with {@link #value}
 * and {@link #sum}.
 */
public final class Exposition {
  private static final Pattern NAME = Pattern.compile("[a-zA-Z_:][a-zA-Z0-9_:]*");
  private static final Pattern LABEL = Pattern.compile("[a-zA-Z_][a-zA-Z0-9_]*");
  private static final Set<String> TYPES =
      Set.of(
          "counter",
          "gauge",
          "histogram",
          "summary",
          "untyped",
          "unknown",
          "info",
          "stateset",
          "gaugehistogram");

  public record Sample(String name, Map<String, String> labels, double value) {
    boolean matches(String name, String... labelPairs) {
      if (!this.name.equals(name)) {
        return false;
      }
      for (int i = 0; i + 1 < labelPairs.length; i += 2) {
        if (!labelPairs[i + 1].equals(labels.get(labelPairs[i]))) {
          return false;
        }
      }
      return true;
    }
  }

  private final List<Sample> samples;
  private final Map<String, String> types;

  private Exposition(List<Sample> samples, Map<String, String> types) {
    this.samples = samples;
    this.types = types;
  }

  public static Exposition parse(String text) {
    List<Sample> samples = new ArrayList<>();
    Map<String, String> types = new LinkedHashMap<>();
    int lineNo = 0;
    for (String line : text.split("\n", -1)) {
      lineNo++;
      try {
        if (line.isEmpty() || line.equals("# EOF")) {
          continue;
        }
        if (line.startsWith("# TYPE ")) {
          String[] parts = line.split(" ", 4);
          if (parts.length != 4 || !NAME.matcher(parts[2]).matches() || !TYPES.contains(parts[3])) {
            throw new IllegalArgumentException("bad TYPE line");
          }
          types.put(parts[2], parts[3]);
        } else if (line.startsWith("# HELP ") || line.startsWith("# UNIT ")) {
          if (!NAME.matcher(line.split(" ", 4)[2]).matches()) {
            throw new IllegalArgumentException("bad metric name");
          }
        } else if (!line.startsWith("#")) {
          samples.add(sample(line));
        }
      } catch (RuntimeException e) {
        throw new IllegalArgumentException(
            "line " + lineNo + ": " + e.getMessage() + ": " + line, e);
      }
    }
    return new Exposition(List.copyOf(samples), types);
  }

  private static Sample sample(String line) {
    int i = 0;
    while (i < line.length() && line.charAt(i) != '{' && line.charAt(i) != ' ') {
      i++;
    }
    String name = line.substring(0, i);
    if (!NAME.matcher(name).matches()) {
      throw new IllegalArgumentException("bad metric name");
    }
    Map<String, String> labels = new LinkedHashMap<>();
    if (i < line.length() && line.charAt(i) == '{') {
      i++;
      while (line.charAt(i) != '}') {
        int eq = line.indexOf('=', i);
        String label = line.substring(i, eq);
        if (!LABEL.matcher(label).matches() || line.charAt(eq + 1) != '"') {
          throw new IllegalArgumentException("bad label");
        }
        StringBuilder value = new StringBuilder();
        int j = eq + 2;
        for (; line.charAt(j) != '"'; j++) {
          char c = line.charAt(j);
          if (c == '\\') {
            char next = line.charAt(++j);
            value.append(next == 'n' ? '\n' : next);
          } else {
            value.append(c);
          }
        }
        if (labels.put(label, value.toString()) != null) {
          throw new IllegalArgumentException("duplicate label " + label);
        }
        i = j + 1;
        if (line.charAt(i) == ',') {
          i++;
        }
      }
      i++;
    }
    String[] rest = line.substring(i).trim().split(" ");
    if (rest.length < 1 || rest.length > 2 || rest[0].isEmpty()) {
      throw new IllegalArgumentException("expected a value and an optional timestamp");
    }
    if (rest.length == 2) {
      Double.parseDouble(rest[1]);
    }
    return new Sample(name, Map.copyOf(labels), value(rest[0]));
  }

  private static double value(String text) {
    return switch (text) {
      case "+Inf", "Inf" -> Double.POSITIVE_INFINITY;
      case "-Inf" -> Double.NEGATIVE_INFINITY;
      case "NaN" -> Double.NaN;
      default -> Double.parseDouble(text);
    };
  }

  public List<Sample> samples() {
    return samples;
  }

  /** Metric families by name, as declared in {@code # TYPE} lines. */
  public Map<String, String> types() {
    return types;
  }

  /** Every sample name that occurs (with {@code _total}, {@code _bucket} etc.). */
  public Set<String> sampleNames() {
    Set<String> names = new TreeSet<>();
    samples.forEach(s -> names.add(s.name()));
    return names;
  }

  /**
   * The one sample named {@code name} whose labels include {@code labelPairs} (name, value, ...);
   * throws unless exactly one matches.
   */
  public double value(String name, String... labelPairs) {
    List<Sample> found = samples.stream().filter(s -> s.matches(name, labelPairs)).toList();
    if (found.size() != 1) {
      throw new IllegalArgumentException(
          found.size() + " samples match " + name + " " + List.of(labelPairs));
    }
    return found.get(0).value();
  }

  /** The sum over samples named {@code name} whose labels include {@code labelPairs}; 0 if none. */
  public double sum(String name, String... labelPairs) {
    return samples.stream()
        .filter(s -> s.matches(name, labelPairs))
        .mapToDouble(Sample::value)
        .sum();
  }

  public boolean has(String name, String... labelPairs) {
    return samples.stream().anyMatch(s -> s.matches(name, labelPairs));
  }
}
