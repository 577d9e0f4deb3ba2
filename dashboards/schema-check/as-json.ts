/**
 * A type as it looks in JSON. Grafana's schema types some fields with TypeScript string enums
 * (ThresholdsMode, MappingType, ...), which are nominal: not even the literal "absolute" is
 * assignable to ThresholdsMode.Absolute. A dashboard file can only hold the enum's value, so this
 * maps every string enum to the union of its values and leaves everything else as the schema has
 * it (numeric enums accept their literal values already).
 */
export type AsJson<T> = T extends string
  ? `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends Array<infer U>
      ? Array<AsJson<U>>
      : T extends object
        ? { [K in keyof T]: AsJson<T[K]> }
        : T;
